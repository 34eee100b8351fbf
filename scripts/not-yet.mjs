// A script whose feature has not landed yet: say so and fail, never pretend to pass.
const [, , name, what] = process.argv;
console.error(`spillway: \`npm run ${name}\` is not available yet. ${what}.`);
process.exit(1);
