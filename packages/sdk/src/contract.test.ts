// "A type change in a service schema breaks the SDK's typecheck, not its users at run time": the
// TypeScript compiler checks the SDK (and its CLI) twice, once against the services' schemas as they
// are (no error) and once with one field of a service schema (the datanets DatanetView, the factory job) renamed in memory
// (errors in the SDK, naming the field). No file is changed on disk.
import assert from "node:assert/strict";
import path from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import ts from "typescript";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
const SDK = path.join(ROOT, "packages", "sdk", "src");
const SCHEMAS = path.join(ROOT, "apps", "datanets", "src", "schemas.ts");

function sdkErrors(overlay?: { file: string; text: string }, oldProgram?: ts.Program) {
  const config = ts.readConfigFile(path.join(ROOT, "tsconfig.base.json"), ts.sys.readFile);
  const { options } = ts.parseJsonConfigFileContent(config.config, ts.sys, ROOT);
  const host = ts.createCompilerHost(options);
  const getSourceFile = host.getSourceFile.bind(host);
  host.getSourceFile = (fileName, lang, onError, fresh) =>
    overlay && path.resolve(fileName) === overlay.file
      ? ts.createSourceFile(fileName, overlay.text, lang)
      : getSourceFile(fileName, lang, onError, fresh);
  const program = ts.createProgram({
    rootNames: [path.join(SDK, "index.ts"), path.join(SDK, "cli", "main.ts")],
    options: { ...options, noEmit: true },
    host,
    ...(oldProgram ? { oldProgram } : {}),
  });
  const errors = ts
    .getPreEmitDiagnostics(program)
    .filter((d) => d.file && path.resolve(d.file.fileName).startsWith(SDK))
    .map((d) => ts.flattenDiagnosticMessageText(d.messageText, "\n"));
  return { program, errors };
}

test("renaming a field of a service's response schema breaks the SDK's typecheck", () => {
  const clean = sdkErrors();
  assert.deepEqual(clean.errors, [], "the SDK typechecks against the services' schemas as they are");
  const text = ts.sys.readFile(SCHEMAS)!;
  assert.match(text, /chainDatanetId: z/);
  const renamed = text.replace("chainDatanetId: z", "registryId: z");
  const broken = sdkErrors({ file: SCHEMAS, text: renamed }, clean.program);
  assert.ok(broken.errors.length > 0, "the rename is caught at compile time");
  assert.ok(
    broken.errors.some((e) => e.includes("chainDatanetId")),
    `an error names the field: ${broken.errors.join("\n")}`,
  );
});

test("renaming a field of the factory's job schema breaks the SDK's (and the CLI's) typecheck", () => {
  const jobs = path.join(ROOT, "apps", "factory", "src", "lib", "jobs.ts");
  const text = ts.sys.readFile(jobs)!;
  assert.match(text, /fine_tuned_model: z/);
  const broken = sdkErrors({ file: jobs, text: text.replace("fine_tuned_model: z", "adapter_model: z") });
  assert.ok(
    broken.errors.some((e) => e.includes("fine_tuned_model")),
    `an error names the field: ${broken.errors.join("\n")}`,
  );
});
