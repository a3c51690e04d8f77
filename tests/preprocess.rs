//! The crop sampler against OpenCV: MediaPipe builds every model input with OpenCV's 8-bit
//! bilinear warp, and the models were trained and scored on those tensors. The reference crops
//! come from `tests/images/make_warp_reference.py` (cv2.warpPerspective, the call MediaPipe's
//! ImageToTensorCalculator makes), on a PNG so that both sides start from the same pixels.

mod common;

use facecast::geometry::Affine;
use facecast::model::manifest::{Colour, InputSpec, Layout};
use facecast::model::preprocess::{sample_into, Border};

/// OpenCV computes each position in double precision and rounds it to 1/32 pixel half to even,
/// facecast in single precision half away from zero: a position near a rounding boundary may
/// fall one step apart (measured: 14 of 110592 values of the rotated crop, by one level).
const MAX_LEVEL_DIFFERENCE: i32 = 1;
/// Share of tensor values that must equal OpenCV's exactly.
const MIN_EXACT_SHARE: f64 = 0.999;

#[test]
fn crops_match_opencv_warp() {
    let derived = common::images().join("derived");
    let reference = common::read_json(&derived.join("warp_reference.json"));
    let frame = common::load_frame(&common::images().join("skimage/astronaut.png"));
    for case in reference["cases"].as_array().unwrap() {
        let png = case["png"].as_str().unwrap();
        let m = common::f32s(&case["map"]);
        let map = Affine {
            a: m[0],
            b: m[1],
            c: m[2],
            d: m[3],
            e: m[4],
            f: m[5],
        };
        let size = case["size"].as_u64().unwrap() as usize;
        let border = match case["border"].as_str().unwrap() {
            "replicate" => Border::Replicate,
            _ => Border::Black,
        };
        // Mean 0, std 1: the tensor holds the sampled levels themselves.
        let spec = InputSpec {
            name: "input".into(),
            shape: vec![1, size, size, 3],
            layout: Layout::Nhwc,
            colour: Colour::Rgb,
            mean: vec![0.0; 3],
            std: vec![1.0; 3],
        };
        let mut tensor = vec![0.0f32; size * size * 3];
        sample_into(&frame, &map, &spec, border, &mut tensor);
        let opencv = image::open(derived.join(png)).unwrap().to_rgb8().into_raw();
        assert_eq!(opencv.len(), tensor.len(), "{png}");
        let differences: Vec<i32> = tensor
            .iter()
            .zip(&opencv)
            .map(|(ours, theirs)| (*ours as i32 - *theirs as i32).abs())
            .collect();
        let worst = *differences.iter().max().unwrap();
        let exact = differences.iter().filter(|d| **d == 0).count() as f64 / tensor.len() as f64;
        println!(
            "{png}: {:.4}% of values exact, worst {worst} levels",
            exact * 100.0
        );
        assert!(worst <= MAX_LEVEL_DIFFERENCE, "{png}: worst {worst}");
        assert!(exact >= MIN_EXACT_SHARE, "{png}: only {exact} exact");
    }
}
