import assert from "node:assert/strict";
import { Readable } from "node:stream";
import { describe, it } from "node:test";
import fc from "fast-check";
import { DatanetInputError } from "../errors.ts";
import {
  formatFromFilename,
  parseContributionFile,
  parseJsonRows,
  streamContributionFile,
} from "./formats.ts";
import { readLines } from "./lines.ts";
import { firstInvalidUtf8 } from "./utf8.ts";

const enc = new TextEncoder();

/** A Node Readable emitting the bytes in chunks of `size`, to exercise chunk boundaries. */
function chunked(bytes: Uint8Array, size: number): Readable {
  const parts: Buffer[] = [];
  for (let i = 0; i < bytes.length; i += size) parts.push(Buffer.from(bytes.subarray(i, i + size)));
  return Readable.from(parts);
}

async function rejectsWith(
  p: Promise<unknown>,
  code: string,
  messagePart?: string | RegExp,
): Promise<DatanetInputError> {
  let caught: unknown;
  try {
    await p;
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof DatanetInputError, `expected DatanetInputError, got ${String(caught)}`);
  assert.equal(caught.code, code, caught.message);
  if (messagePart !== undefined)
    assert.match(caught.message, messagePart instanceof RegExp ? messagePart : new RegExp(messagePart));
  return caught;
}

describe("txt", () => {
  it("paragraph mode: one row per blank-line separated block, starting line recorded", async () => {
    const rows = await parseContributionFile("first line\nstill first\n\n\n  \nsecond\r\n\r\nthird", "txt");
    assert.deepEqual(
      rows.map((r) => [r.index, r.line, r.text]),
      [
        [0, 1, "first line\nstill first"],
        [1, 6, "second"],
        [2, 8, "third"],
      ],
    );
  });
  it("line mode: one row per non-empty line", async () => {
    const rows = await parseContributionFile("a\n\nb\nc\n", "txt", { txtMode: "line" });
    assert.deepEqual(
      rows.map((r) => r.text),
      ["a", "b", "c"],
    );
  });
  it("empty or blank file is EMPTY_FILE", async () => {
    await rejectsWith(parseContributionFile("\n \n\t\n", "txt"), "EMPTY_FILE");
    await rejectsWith(parseContributionFile("", "txt"), "EMPTY_FILE");
  });
  it("drops a UTF-8 BOM", async () => {
    const bytes = new Uint8Array([0xef, 0xbb, 0xbf, ...enc.encode("héllo")]);
    const rows = await parseContributionFile(bytes, "txt");
    assert.equal(rows[0]?.text, "héllo");
  });
});

describe("strict UTF-8", () => {
  it("rejects an invalid byte naming line and byte offset", async () => {
    const good = enc.encode("ok line\nsecond ");
    const bytes = new Uint8Array([...good, 0xff, ...enc.encode(" tail\n")]);
    const err = await rejectsWith(parseContributionFile(chunked(bytes, 3), "txt"), "INVALID_UTF8", "line 2");
    assert.equal(err.line, 2);
    assert.equal(err.byteOffset, good.length);
  });
  it("rejects overlong encodings, surrogates and truncated sequences", async () => {
    for (const bad of [
      [0xc0, 0xaf],
      [0xed, 0xa0, 0x80],
      [0xe2, 0x82],
      [0xf4, 0x90, 0x80, 0x80],
    ]) {
      await rejectsWith(parseContributionFile(new Uint8Array([0x61, ...bad]), "txt"), "INVALID_UTF8");
    }
  });
  it("a multi-byte character split across chunks is fine", async () => {
    const bytes = enc.encode("€uro ☃ snow 𝄞 clef\nnext");
    for (const size of [1, 2, 3, 5]) {
      const rows = await parseContributionFile(chunked(bytes, size), "txt", { txtMode: "line" });
      assert.deepEqual(
        rows.map((r) => r.text),
        ["€uro ☃ snow 𝄞 clef", "next"],
      );
    }
  });
  it("firstInvalidUtf8 agrees with the native fatal decoder on arbitrary bytes", () => {
    const fatal = new TextDecoder("utf-8", { fatal: true });
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 24 }), (bytes) => {
        let native = true;
        try {
          fatal.decode(bytes);
        } catch {
          native = false;
        }
        assert.equal(firstInvalidUtf8(bytes) === -1, native);
      }),
      { numRuns: 2000 },
    );
  });
  it("lines round-trip arbitrary valid text split at any chunk size", async () => {
    // No CR/LF inside a line; no BOM (a leading one is dropped on purpose).
    const lineArb = fc.string({ unit: "grapheme", maxLength: 12 }).filter((s) => !/[\r\n\uFEFF]/.test(s));
    await fc.assert(
      fc.asyncProperty(
        fc.array(lineArb, { minLength: 1, maxLength: 8 }),
        fc.integer({ min: 1, max: 7 }),
        async (lines, size) => {
          const out: string[] = [];
          const src = chunked(enc.encode(lines.join("\n")), size);
          for await (const l of readLines(src, { maxFileBytes: 1 << 20, maxRowBytes: 1 << 16 }))
            out.push(l.text);
          // A final empty line has no bytes, so there is nothing to emit for it.
          assert.deepEqual(out, lines.at(-1) === "" ? lines.slice(0, -1) : lines);
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe("size limits", () => {
  it("FILE_TOO_LARGE stops reading early", async () => {
    let pulled = 0;
    async function* endless() {
      for (;;) {
        pulled++;
        yield enc.encode("row of text\n".repeat(100));
      }
    }
    await rejectsWith(
      parseContributionFile(endless(), "txt", { limits: { maxFileBytes: 10_000 } }),
      "FILE_TOO_LARGE",
    );
    assert.ok(pulled < 20);
  });
  it("an error stops and destroys the source stream (no reading to the end)", async () => {
    let produced = 0;
    const source = new Readable({
      read() {
        produced++;
        this.push(produced === 1 ? '{"text":"ok"}\nnot json\n' : '{"text":"more"}\n');
      },
    });
    await rejectsWith(parseContributionFile(source, "jsonl"), "MALFORMED_JSONL", "line 2");
    assert.ok(source.destroyed);
    assert.ok(produced < 50);
  });
  it("ROW_TOO_LONG for a long line and for a long paragraph, naming the line", async () => {
    await rejectsWith(
      parseContributionFile(`a\n\n${"x".repeat(200)}\n`, "txt", { limits: { maxRowBytes: 100 } }),
      "ROW_TOO_LONG",
      "line 3",
    );
    const para = Array.from({ length: 10 }, () => "y".repeat(20)).join("\n");
    await rejectsWith(
      parseContributionFile(`short\n\n${para}`, "txt", { limits: { maxRowBytes: 100 } }),
      "ROW_TOO_LONG",
      "line 3",
    );
  });
  it("TOO_MANY_ROWS", async () => {
    await rejectsWith(
      parseContributionFile("a\nb\nc\n", "txt", { txtMode: "line", limits: { maxRows: 2 } }),
      "TOO_MANY_ROWS",
      "line 3",
    );
  });
});

describe("md", () => {
  it("splits paragraphs, records the heading path, keeps fences whole, skips front matter", async () => {
    const md = [
      "---",
      "title: x",
      "---",
      "# Guide",
      "Intro paragraph",
      "continues here.",
      "",
      "## Install",
      "Run this:",
      "",
      "```sh",
      "npm i",
      "",
      "npm test",
      "```",
      "### Deep ###",
      "Last words.",
    ].join("\n");
    const rows = await parseContributionFile(md, "md");
    assert.deepEqual(
      rows.map((r) => [r.line, r.text, r.metadata?.["section"]]),
      [
        [5, "Intro paragraph\ncontinues here.", "Guide"],
        [9, "Run this:", "Guide > Install"],
        [11, "```sh\nnpm i\n\nnpm test\n```", "Guide > Install"],
        [17, "Last words.", "Guide > Install > Deep"],
      ],
    );
  });
});

describe("jsonl", () => {
  it("parses rows with label and metadata, skipping blank lines", async () => {
    const src = '{"text":"hello world","label":"greet"}\n\n{"text":"bye","metadata":{"src":"x"}}\n';
    const rows = await parseContributionFile(src, "jsonl");
    assert.deepEqual(rows, [
      { index: 0, line: 1, text: "hello world", label: "greet" },
      { index: 1, line: 3, text: "bye", metadata: { src: "x" } },
    ]);
  });
  it("a malformed line is an error naming it, and nothing is returned", async () => {
    const src = '{"text":"a"}\n{"text":"b"}\n{"text": "c",\n{"text":"d"}\n';
    const err = await rejectsWith(
      parseContributionFile(src, "jsonl"),
      "MALFORMED_JSONL",
      /^line 3: not valid JSON/,
    );
    assert.equal(err.line, 3);
  });
  it("streaming parser yields earlier rows then throws at the bad line", async () => {
    const seen: string[] = [];
    await rejectsWith(
      (async () => {
        for await (const r of streamContributionFile('{"text":"a"}\n[1]\n', "jsonl")) seen.push(r.text);
      })(),
      "MALFORMED_JSONL",
      "line 2",
    );
    assert.deepEqual(seen, ["a"]);
  });
  it("rejects missing/empty text, wrong types, unknown fields, lone surrogates", async () => {
    await rejectsWith(parseContributionFile('{"label":"x"}', "jsonl"), "MALFORMED_JSONL", '"text"');
    await rejectsWith(parseContributionFile('{"text":"  "}', "jsonl"), "MALFORMED_JSONL");
    await rejectsWith(parseContributionFile('{"text":"a","label":3}', "jsonl"), "MALFORMED_JSONL", "label");
    await rejectsWith(
      parseContributionFile('{"text":"a","id":3}', "jsonl"),
      "MALFORMED_JSONL",
      'unknown field "id"',
    );
    await rejectsWith(parseContributionFile('{"text":"a\\ud800b"}', "jsonl"), "INVALID_UTF8", "line 1");
  });
});

describe("csv", () => {
  it("needs a text column; label optional; other columns become metadata", async () => {
    const src = 'label,text,source\npos,"great, really",web\n,"multi\nline",book\n';
    const rows = await parseContributionFile(src, "csv");
    assert.deepEqual(rows, [
      { index: 0, line: 2, text: "great, really", label: "pos", metadata: { source: "web" } },
      { index: 1, line: 4, text: "multi\nline", metadata: { source: "book" } },
    ]);
  });
  it("matches Text/Label case-insensitively and rejects duplicate columns", async () => {
    const rows = await parseContributionFile("Label,Text\nx,hello\n", "csv");
    assert.deepEqual(rows, [{ index: 0, line: 2, text: "hello", label: "x" }]);
    await rejectsWith(
      parseContributionFile("text,Text\na,b\n", "csv"),
      "MALFORMED_CSV",
      'duplicate column "text"',
    );
  });
  it("MISSING_TEXT_COLUMN names the header line", async () => {
    const err = await rejectsWith(
      parseContributionFile("body,label\nx,y\n", "csv"),
      "MISSING_TEXT_COLUMN",
      "line 1",
    );
    assert.equal(err.line, 1);
  });
  it("inconsistent column count is MALFORMED_CSV with its line", async () => {
    await rejectsWith(parseContributionFile("text,label\na,b\nc,d,e\n", "csv"), "MALFORMED_CSV", "line 3");
  });
  it("invalid UTF-8 inside a CSV is caught before the CSV parser", async () => {
    const bytes = new Uint8Array([...enc.encode("text\nfine\nbad "), 0xc3, 0x28, 0x0a]);
    await rejectsWith(parseContributionFile(bytes, "csv"), "INVALID_UTF8", "line 3");
  });
  it("header only is EMPTY_FILE", async () => {
    await rejectsWith(parseContributionFile("text,label\n", "csv"), "EMPTY_FILE");
  });
  it("reads from a web ReadableStream", async () => {
    const stream = new Blob(["text\nhello\nworld\n"]).stream();
    const rows = await parseContributionFile(stream, "csv");
    assert.deepEqual(
      rows.map((r) => r.text),
      ["hello", "world"],
    );
  });
});

describe("JSON rows and formats", () => {
  it("validates an array and names the bad row", () => {
    assert.deepEqual(parseJsonRows([{ text: "a" }, { text: "b", label: "l" }]), [
      { index: 0, text: "a" },
      { index: 1, text: "b", label: "l" },
    ]);
    assert.throws(
      () => parseJsonRows([{ text: "a" }, { txt: "b" }]),
      (e: unknown) =>
        e instanceof DatanetInputError && e.code === "INVALID_ROW" && e.row === 2 && /row 2/.test(e.message),
    );
    assert.throws(
      () => parseJsonRows({}),
      (e: unknown) => e instanceof DatanetInputError && e.code === "MALFORMED_JSON",
    );
    assert.throws(
      () => parseJsonRows([]),
      (e: unknown) => e instanceof DatanetInputError && e.code === "EMPTY_FILE",
    );
  });
  it("maps file names to formats", () => {
    assert.equal(formatFromFilename("a.JSONL"), "jsonl");
    assert.equal(formatFromFilename("notes.markdown"), "md");
    assert.throws(
      () => formatFromFilename("x.pdf"),
      (e: unknown) => e instanceof DatanetInputError && e.code === "UNSUPPORTED_FORMAT",
    );
  });
});
