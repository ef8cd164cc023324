// Run the Khronos glTF-Validator on one file and print its JSON report on stdout.
// Usage: node gltf_validate.mjs <module dir of gltf-validator> <file.glb|file.gltf>
// External resources (.bin, images) are read only from inside the asset's own folder.
import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import path from "node:path";

const [moduleDir, file] = process.argv.slice(2);
const require = createRequire(import.meta.url);
const validator = require(path.resolve(moduleDir));

const folder = path.dirname(path.resolve(file));
const data = new Uint8Array(await readFile(file));

function external(uri) {
  const target = path.resolve(folder, decodeURIComponent(uri));
  if (target !== folder && !target.startsWith(folder + path.sep)) {
    return Promise.reject(`refusing ${uri}: outside the asset folder`);
  }
  return readFile(target).then((b) => new Uint8Array(b), (e) => Promise.reject(e.toString()));
}

try {
  const report = await validator.validateBytes(data, {
    uri: path.basename(file),
    maxIssues: 0,
    writeTimestamp: false,
    externalResourceFunction: external,
  });
  process.stdout.write(JSON.stringify({ validatorVersion: validator.version(), report }));
} catch (e) {
  process.stdout.write(JSON.stringify({ validatorVersion: validator.version(), exception: String(e) }));
}
