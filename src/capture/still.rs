//! Still images as a source: one file, every image of a directory, or a glob, in sorted order.

use std::path::{Path, PathBuf};

use super::{CaptureError, FrameSource, Grab};
use crate::frame::Frame;

const IMAGE_EXTENSIONS: [&str; 6] = ["jpg", "jpeg", "png", "bmp", "webp", "ppm"];

pub struct StillImages {
    pattern: String,
    files: Vec<PathBuf>,
    next: usize,
}

impl StillImages {
    pub fn open(pattern: &str) -> Result<Self, CaptureError> {
        let files = list_images(pattern)?;
        if files.is_empty() {
            return Err(CaptureError::BadUri(format!(
                "image:{pattern}: no image files found"
            )));
        }
        Ok(StillImages {
            pattern: pattern.into(),
            files,
            next: 0,
        })
    }

    /// The files this source reads, in order.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }
}

/// The image files `pattern` names: a file as it is, a directory's images, or a glob's matches.
pub fn list_images(pattern: &str) -> Result<Vec<PathBuf>, CaptureError> {
    let path = Path::new(pattern);
    let mut files: Vec<PathBuf> = if path.is_dir() {
        std::fs::read_dir(path)
            .map_err(|e| CaptureError::io(format!("cannot list {pattern}"), e))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| is_image(p))
            .collect()
    } else if path.is_file() {
        vec![path.to_path_buf()]
    } else {
        glob::glob(pattern)
            .map_err(|e| CaptureError::BadUri(format!("image:{pattern}: {e}")))?
            .filter_map(Result::ok)
            .filter(|p| p.is_file() && is_image(p))
            .collect()
    };
    files.sort();
    Ok(files)
}

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Decodes an image file into `frame` as RGB.
pub fn load_into(path: &Path, frame: &mut Frame) -> Result<(), CaptureError> {
    let corrupt = |why: String| CaptureError::Corrupt(format!("{}: {why}", path.display()));
    let bytes = std::fs::read(path).map_err(|e| corrupt(e.to_string()))?;
    let format = image::guess_format(&bytes)
        .or_else(|_| image::ImageFormat::from_path(path))
        .map_err(|e| corrupt(e.to_string()))?;
    if format == image::ImageFormat::Jpeg && !crate::pixel::jpeg_is_complete(&bytes) {
        return Err(corrupt("JPEG cut short (no end-of-image marker)".into()));
    }
    let image = image::load_from_memory_with_format(&bytes, format)
        .map_err(|e| corrupt(e.to_string()))?
        .into_rgb8();
    frame
        .resize(image.width(), image.height())
        .copy_from_slice(image.as_raw());
    frame.stamp_now();
    Ok(())
}

impl FrameSource for StillImages {
    fn describe(&self) -> String {
        format!("image:{} ({} files)", self.pattern, self.files.len())
    }

    fn grab(&mut self, frame: &mut Frame) -> Result<Grab, CaptureError> {
        let Some(path) = self.files.get(self.next) else {
            return Ok(Grab::End);
        };
        self.next += 1;
        load_into(path, frame)?;
        Ok(Grab::Frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IMAGES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/images");

    #[test]
    fn directory_glob_and_file_list_sorted_images() {
        let dir = format!("{IMAGES}/dlib");
        let from_dir = list_images(&dir).unwrap();
        let from_glob = list_images(&format!("{dir}/*.jpg")).unwrap();
        assert!(from_dir.len() >= 10, "{from_dir:?}");
        assert_eq!(from_dir, from_glob);
        assert!(from_dir.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(
            list_images(&format!("{IMAGES}/skimage/astronaut.png"))
                .unwrap()
                .len(),
            1
        );
        assert!(StillImages::open(&format!("{dir}/*.nothing")).is_err());
    }

    #[test]
    fn a_corrupt_file_is_skipped_not_fatal() {
        let dir = std::env::temp_dir().join(format!("facecast-still-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.jpg"), b"not a jpeg").unwrap();
        std::fs::copy(format!("{IMAGES}/skimage/astronaut.png"), dir.join("b.png")).unwrap();
        let mut source = StillImages::open(dir.to_str().unwrap()).unwrap();
        let mut frame = Frame::with_capacity(0, 0);
        assert!(matches!(
            source.grab(&mut frame),
            Err(CaptureError::Corrupt(_))
        ));
        assert_eq!(source.grab(&mut frame).unwrap(), Grab::Frame);
        assert_eq!((frame.width, frame.height), (512, 512));
        assert_eq!(source.grab(&mut frame).unwrap(), Grab::End);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_jpeg_cut_short_is_corrupt_not_a_grey_filled_frame() {
        let dir = std::env::temp_dir().join(format!("facecast-still-cut-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let whole = std::fs::read(format!("{IMAGES}/face_recognition/biden.jpg")).unwrap();
        let cut = dir.join("cut.jpg");
        std::fs::write(&cut, &whole[..whole.len() / 2]).unwrap();
        let mut frame = Frame::with_capacity(0, 0);
        let error = load_into(&cut, &mut frame).unwrap_err();
        assert!(error.to_string().contains("cut short"), "{error}");
        std::fs::write(&cut, &whole).unwrap();
        load_into(&cut, &mut frame).unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    }
}
