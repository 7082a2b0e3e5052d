// Bundle the front end into ONE ES module that anywidget loads: alwidget/static/widget.js.
// CSS is inlined as text (injected by the widget), so there is a single artefact to ship.
// Usage: node build.mjs [--watch] [--dev]
import * as esbuild from "esbuild";
import { fileURLToPath } from "node:url";
import path from "node:path";

const here = path.dirname(fileURLToPath(import.meta.url));
const watch = process.argv.includes("--watch");
const dev = process.argv.includes("--dev") || watch;

const options = {
  entryPoints: [path.join(here, "src", "index.js")],
  outfile: path.join(here, "..", "alwidget", "static", "widget.js"),
  bundle: true,
  format: "esm",
  target: ["es2020"],
  minify: !dev,
  sourcemap: dev ? "inline" : false,
  loader: { ".css": "text" },
  legalComments: "eof",
  logLevel: "info",
};

if (watch) {
  const ctx = await esbuild.context(options);
  await ctx.watch();
} else {
  await esbuild.build(options);
}
