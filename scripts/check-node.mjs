// Every npm script runs on the Node 24 that `npm ci` installs (the `node` devDependency).
const major = Number(process.versions.node.split('.')[0]);
if (major < 24) {
  console.error(
    `spillway: Node.js ${process.versions.node} is running, 24 is required. ` +
      'Run `npm ci` first so the pinned Node 24 is installed into node_modules/.bin, ' +
      'then use `npm run <script>`.',
  );
  process.exit(1);
}
