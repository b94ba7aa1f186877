// Creates the tree bench/watch.sh watches (once; kept between runs):
//   TREE/{src,src/routes,src/lib,views,public,public/css,config}   the kept folders (+ TREE)
//   TREE/node_modules/pkg-NNNN/{lib,lib/util,dist,dist/esm,dist/cjs,src,src/internal,test,types}
//   = NODE_MODULES_DIRS folders under node_modules (20,000: 2,000 packages x 10), one
//   package.json and one index.js per package.
// Usage: node make-tree.js TREE [NODE_MODULES_DIRS]
'use strict';
const fs = require('fs');
const path = require('path');

const tree = process.argv[2];
const want = Number(process.argv[3] || 20000);
const marker = path.join(tree, '.bench-tree');
const signature = `node_modules_dirs=${want} v1`;

if (fs.existsSync(marker) && fs.readFileSync(marker, 'utf8') === signature) {
  process.stdout.write(`tree ready: ${tree}\n`);
  process.exit(0);
}
fs.rmSync(tree, { recursive: true, force: true });

const kept = ['src', 'src/routes', 'src/lib', 'views', 'public', 'public/css', 'config'];
for (const d of kept) {
  fs.mkdirSync(path.join(tree, d), { recursive: true });
  fs.writeFileSync(path.join(tree, d, 'index.js'), `module.exports = ${JSON.stringify(d)};\n`);
}
fs.writeFileSync(path.join(tree, 'src', 'data.js'), 'module.exports = 0;\n');
fs.writeFileSync(path.join(tree, 'package.json'), '{"name": "watch-bench", "private": true}\n');

const sub = ['lib', 'lib/util', 'dist', 'dist/esm', 'dist/cjs', 'src', 'src/internal', 'test', 'types'];
const perPkg = sub.length + 1;
const pkgs = Math.ceil(want / perPkg);
let made = 0;
for (let i = 0; i < pkgs && made < want; i++) {
  const p = path.join(tree, 'node_modules', `pkg-${String(i).padStart(4, '0')}`);
  fs.mkdirSync(p, { recursive: true });
  made++;
  fs.writeFileSync(path.join(p, 'package.json'), `{"name": "pkg-${i}", "version": "1.0.0"}\n`);
  fs.writeFileSync(path.join(p, 'index.js'), 'module.exports = 1;\n');
  for (const s of sub) {
    if (made >= want) break;
    fs.mkdirSync(path.join(p, s), { recursive: true });
    made++;
  }
}
fs.writeFileSync(marker, signature);
process.stdout.write(`tree made: ${tree} (${kept.length + 1} kept folders, ${made} folders under node_modules)\n`);
