// face-api (@vladmandic/face-api@1.7.15, tfjs 4.22.0) run in node: the reference for
// faceapi_age_gender and faceapi_expression. Called by faceapi.py; not meant to be run alone.
//
//   node faceapi_reference.js crop <workdir> <backend>
//     for every <case>.rgb (+ <case>.json: {width, height}) in <workdir>: face-api's own pipeline
//     detectSingleFace(SsdMobilenetv1, minConfidence 0.5).withFaceLandmarks() (68 points), then the
//     crop face-api's age/gender and expression tasks use: extractFaceTensors(image,
//     [alignedRect]) (box clipped to the image, floored), NetInput.toBatchTensor(112, true)
//     (zero-pad to a centred square, tf.image.resizeBilinear to 112x112, alignCorners false,
//     halfPixelCenters false). The 112x112 float crop is rounded and clipped to bytes and written
//     to <case>.crop.rgb; face-api's end-to-end results (on the float crop) go to <case>.faceapi.json.
//   node faceapi_reference.js run <workdir> <backend>
//     for every <case>.input.rgb (112x112x3 bytes, read back from the fixture PNG by faceapi.py):
//     ageGenderNet.forward and faceExpressionNet.forward on that tensor (face-api's own
//     normalisation: (x - [122.782, 117.001, 104.298]) / 255 inside the nets); outputs to
//     <case>.reference.<backend>.json.
'use strict';

const fs = require('fs');
const path = require('path');

const [mode, workdir, backend] = process.argv.slice(2);
const NODE_DIR = process.env.FACEAPI_NODE_DIR;
const faceapi = require(path.join(NODE_DIR, 'node_modules/@vladmandic/face-api/dist/face-api.node-wasm.js'));
const tf = faceapi.tf;
const MODEL_DIR = path.join(NODE_DIR, 'node_modules/@vladmandic/face-api/model');

function cases(suffix) {
  return fs.readdirSync(workdir).filter((f) => f.endsWith(suffix)).map((f) => f.slice(0, -suffix.length)).sort();
}

function readRgb(file, width, height) {
  const bytes = fs.readFileSync(file);
  if (bytes.length !== width * height * 3) throw new Error(`${file}: ${bytes.length} bytes, expected ${width}x${height}x3`);
  return tf.tensor3d(new Uint8Array(bytes), [height, width, 3], 'int32');
}

async function main() {
  if (backend === 'wasm') {
    faceapi.tf.setWasmPaths(path.join(NODE_DIR, 'node_modules/@tensorflow/tfjs-backend-wasm/dist/'));
  }
  await tf.setBackend(backend);
  await tf.ready();
  await faceapi.nets.ageGenderNet.loadFromDisk(MODEL_DIR);
  await faceapi.nets.faceExpressionNet.loadFromDisk(MODEL_DIR);
  const meta = { backend: tf.getBackend(), tfjs: tf.version_core, faceapi: faceapi.version };
  if (mode === 'crop') {
    await faceapi.nets.ssdMobilenetv1.loadFromDisk(MODEL_DIR);
    await faceapi.nets.faceLandmark68Net.loadFromDisk(MODEL_DIR);
    for (const c of cases('.rgb').filter((n) => !n.includes('.'))) {
      const { width, height } = JSON.parse(fs.readFileSync(path.join(workdir, `${c}.json`)));
      const image = readRgb(path.join(workdir, `${c}.rgb`), width, height);
      const options = new faceapi.SsdMobilenetv1Options({ minConfidence: 0.5 });
      const det = await faceapi.detectSingleFace(image, options).withFaceLandmarks()
        .withAgeAndGender().withFaceExpressions();
      if (!det) {
        fs.writeFileSync(path.join(workdir, `${c}.faceapi.json`), JSON.stringify({ ...meta, face: null }));
        image.dispose();
        continue;
      }
      const faces = await faceapi.extractFaceTensors(image, [det.alignedRect]);
      const crop = tf.tidy(() => {
        const input = new faceapi.NetInput([faces[0]]);
        const batch = input.toBatchTensor(112, true);
        return tf.clipByValue(tf.round(batch), 0, 255).cast('int32');
      });
      const data = await crop.data();
      fs.writeFileSync(path.join(workdir, `${c}.crop.rgb`), Buffer.from(Uint8Array.from(data)));
      const b = det.detection.box;
      const a = det.alignedRect.box;
      const clipped = a.clipAtImageBorders(width, height);
      fs.writeFileSync(path.join(workdir, `${c}.faceapi.json`), JSON.stringify({
        ...meta,
        detection: { score: det.detection.score, box: [b.x, b.y, b.width, b.height] },
        alignedRect: [a.x, a.y, a.width, a.height],
        crop_box: [clipped.x, clipped.y, clipped.width, clipped.height],
        age: det.age, gender: det.gender, genderProbability: det.genderProbability,
        expressions: det.expressions,
      }));
      faces.forEach((t) => t.dispose());
      crop.dispose();
      image.dispose();
    }
  } else if (mode === 'run') {
    for (const c of cases('.input.rgb')) {
      const x = readRgb(path.join(workdir, `${c}.input.rgb`), 112, 112);
      const ag = await faceapi.nets.ageGenderNet.forward(x);
      const ex = await faceapi.nets.faceExpressionNet.forward(x);
      const out = {
        ...meta,
        age: { shape: ag.age.shape, data: Array.from(await ag.age.data()) },
        gender: { shape: ag.gender.shape, data: Array.from(await ag.gender.data()) },
        expressions: { shape: ex.shape, data: Array.from(await ex.data()) },
      };
      fs.writeFileSync(path.join(workdir, `${c}.reference.${backend}.json`), JSON.stringify(out));
      tf.dispose([x, ag.age, ag.gender, ex]);
    }
  } else {
    throw new Error(`unknown mode ${mode}`);
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
