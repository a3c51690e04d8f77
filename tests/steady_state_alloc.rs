//! Capture, pixel conversion and model pre-processing allocate nothing per frame once running:
//! a counting global allocator watches a Y4M stream read into the frame ring, YUYV and NV12
//! conversion (the V4L2 formats), and the detector's letterbox and the mesh's rotated crop
//! sampled into their input tensors. (MJPEG decoding allocates inside the JPEG decoder; model
//! inference allocates inside tract: neither is claimed here.)
//!
//! Allocations are counted per thread, so the test harness's own (its progress messages) do
//! not count.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Cursor;

use facecast::analyse::roi::Roi;
use facecast::capture::{write_420_frame, FrameSource, Grab, Y4mHeader, Y4mReader};
use facecast::detect::Face;
use facecast::frame::{Frame, FrameRing, WhenFull};
use facecast::geometry::{Affine, Rect};
use facecast::model::preprocess::{sample_into, Border};
use facecast::model::Manifest;
use facecast::pixel::{rgb_to_i420, to_rgb, PixelFormat, Range};

struct Counting;

thread_local! {
    // Constant-initialised and without a destructor: reading it never allocates.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count_one() {
    ALLOCATIONS.with(|n| n.set(n.get() + 1));
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one();
        System.alloc(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_one();
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const W: u32 = 640;
const H: u32 = 480;
const WARM_UP: usize = 3;
const FRAMES: usize = 20;

/// Allocations made by `f` on this thread.
fn allocations_in(f: impl FnOnce()) -> u64 {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

#[test]
fn capture_conversion_and_preprocessing_allocate_nothing_per_frame() {
    // A Y4M stream of real photos, as a camera or ffmpeg would deliver it.
    let photos = ["face_recognition/obama.jpg", "pyfeat/multi_face.jpg"];
    let mut stream = Vec::new();
    Y4mHeader::write_420(&mut stream, W, H, 30).unwrap();
    let mut rgb_frames = Vec::new();
    for i in 0..FRAMES {
        let rgb = common::letterboxed_photo(photos[i % photos.len()], W, H);
        write_420_frame(&mut stream, &rgb, W, H).unwrap();
        rgb_frames.push(rgb);
    }
    let mut reader = Y4mReader::new(Cursor::new(stream), "test clip".into()).unwrap();
    let ring = FrameRing::new(4, W, H, WhenFull::Wait);

    // The V4L2 formats, made from the same photo's 4:2:0 planes.
    let (w, h) = (W as usize, H as usize);
    let i420 = rgb_to_i420(&rgb_frames[0], W, H);
    let (luma, chroma) = i420.split_at(w * h);
    let (u, v) = chroma.split_at(w * h / 4);
    let mut nv12 = luma.to_vec();
    nv12.extend(u.iter().zip(v).flat_map(|(&u, &v)| [u, v]));
    let yuyv: Vec<u8> = (0..h)
        .flat_map(|y| (0..w / 2).map(move |x| (y, x)))
        .flat_map(|(y, x)| {
            let c = (y / 2) * (w / 2) + x;
            [luma[y * w + 2 * x], u[c], luma[y * w + 2 * x + 1], v[c]]
        })
        .collect();
    let mut converted = vec![0u8; (W * H * 3) as usize];

    let manifest = Manifest::load(&common::models_dir()).unwrap();
    let detector = manifest.entry("blazeface_full").unwrap().input.clone();
    let mesh = manifest.entry("face_mesh").unwrap().input.clone();
    let mut detector_tensor = vec![0.0f32; detector.shape.iter().product()];
    let mut mesh_tensor = vec![0.0f32; mesh.shape.iter().product()];
    let letterbox = Affine::letterbox(W, H, detector.width() as u32, detector.height() as u32);
    let face = Face {
        bbox: Rect {
            x: 250.0,
            y: 150.0,
            w: 140.0,
            h: 140.0,
        },
        score: 0.9,
        keypoints: vec![
            [290.0, 200.0],
            [350.0, 205.0],
            [320.0, 240.0],
            [320.0, 265.0],
        ],
    };
    let crop = Roi::for_mesh_from_detection(&face).tensor_to_frame(mesh.width() as f32, false);

    let mut per_frame = Vec::new();
    for i in 0..FRAMES {
        let allocated = allocations_in(|| {
            let mut frame: Frame = ring.take_free().unwrap();
            assert!(matches!(reader.grab(&mut frame), Ok(Grab::Frame)));
            ring.push_filled(frame);
            let frame = ring.pop_filled().unwrap();
            sample_into(
                &frame,
                &letterbox,
                &detector,
                Border::Black,
                &mut detector_tensor,
            );
            sample_into(&frame, &crop, &mesh, Border::Replicate, &mut mesh_tensor);
            ring.recycle(frame);
            to_rgb(
                PixelFormat::Yuyv,
                Range::Limited,
                &yuyv,
                W,
                H,
                &mut converted,
            )
            .unwrap();
            to_rgb(
                PixelFormat::Nv12,
                Range::Limited,
                &nv12,
                W,
                H,
                &mut converted,
            )
            .unwrap();
        });
        per_frame.push(allocated);
        assert!(
            i < WARM_UP || allocated == 0,
            "frame {i}: {allocated} heap allocations (all frames: {per_frame:?})"
        );
    }
    // The tensors hold the photo, not zeros: the work measured was really done.
    assert!(detector_tensor.iter().any(|&v| v != detector_tensor[0]));
    assert!(mesh_tensor.iter().any(|&v| v != mesh_tensor[0]));
    println!("heap allocations per frame: {per_frame:?}");
}
