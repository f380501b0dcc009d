// bench:peers child processes: each measurement of memory runs in a fresh process.
export async function childMain(mode: string, argv: string[]): Promise<void> {
  if (mode === "rss-ours" || mode === "rss-peer") {
    const { rssChild } = await import("./peers-decode.ts");
    await rssChild(mode === "rss-ours" ? "ours" : "peer", argv);
    return;
  }
  if (mode === "sa-ours") {
    const { saChild } = await import("./peers-sa.ts");
    await saChild(argv);
    return;
  }
  throw new Error(`unknown child mode ${mode}`);
}
