//! The familiar 68 points (iBUG 300-W order, as dlib's shape predictor gives them) picked from
//! the 468-point FaceMesh. Each of the 68 is the mesh vertex at the same anatomical place,
//! following the correspondence commonly used between the two schemes; it was not fitted to
//! the test photos. Its error against dlib's hand-labelled faces is in docs/accuracy.md.

/// Mesh vertex for each iBUG point, in iBUG order. "Right" is the subject's right (the
/// image's left in an unmirrored photo).
pub const MESH_INDEX: [usize; 68] = [
    // 0-16: jaw line, from the right ear to the left ear via the chin (8)
    127, 234, 93, 132, 58, 172, 136, 150, 152, 379, 365, 397, 288, 361, 323, 454, 356,
    // 17-21: right eyebrow, outer to inner
    70, 63, 105, 66, 107, // 22-26: left eyebrow, inner to outer
    336, 296, 334, 293, 300, // 27-30: nose bridge, top to tip
    168, 197, 5, 4, // 31-35: nostrils, right to left
    75, 97, 2, 326, 305,
    // 36-41: right eye, outer corner, upper lid, inner corner, lower lid
    33, 160, 158, 133, 153, 144,
    // 42-47: left eye, inner corner, upper lid, outer corner, lower lid
    362, 385, 387, 263, 373, 380,
    // 48-59: outer lips, right corner, upper lip, left corner, lower lip
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,
    // 60-67: inner lips, right corner, upper, left corner, lower
    78, 82, 13, 312, 308, 317, 14, 87,
];

/// The 68 points from a mesh, (x, y) in the mesh's pixels.
pub fn from_mesh(mesh: &[[f32; 3]]) -> Vec<[f32; 2]> {
    MESH_INDEX
        .iter()
        .map(|&i| [mesh[i][0], mesh[i][1]])
        .collect()
}
