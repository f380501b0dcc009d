import { Template } from "@huggingface/jinja";
import { Tokenizer } from "@huggingface/tokenizers";
import { TINY_BOS, TINY_EOS, TINY_PAD } from "./config.ts";
import { ModelRuntimeError } from "./errors.ts";

export interface ChatMessage {
  role: string;
  content: string;
}

/** What the gateway needs from a tokenizer, whichever kind backs it. */
export interface TextTokenizer {
  readonly bosTokenId: number | null;
  readonly eosTokenIds: number[];
  encode(text: string, options?: { addSpecialTokens?: boolean }): number[];
  decode(ids: number[], options?: { skipSpecialTokens?: boolean }): string;
  /** Renders the chat template to a prompt string (then `encode` it with addSpecialTokens false). */
  applyChatTemplate(messages: ChatMessage[], options?: { addGenerationPrompt?: boolean }): string;
}

/** ChatML, used when a tokenizer ships no template (and by the tiny model). */
export const CHATML_TEMPLATE =
  "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/**
 * Byte-level tokenizer of the built-in tiny model: ids 0..255 are UTF-8 bytes, then
 * BOS/EOS/PAD. Chat markers are spelled out in bytes, so any text round-trips.
 */
export class ByteTokenizer implements TextTokenizer {
  readonly bosTokenId = TINY_BOS;
  readonly eosTokenIds = [TINY_EOS];
  private readonly template = new Template(CHATML_TEMPLATE);

  encode(text: string, options: { addSpecialTokens?: boolean } = {}): number[] {
    const bytes = [...new TextEncoder().encode(text)];
    return options.addSpecialTokens === false ? bytes : [TINY_BOS, ...bytes];
  }

  decode(ids: number[], options: { skipSpecialTokens?: boolean } = {}): string {
    const skip = options.skipSpecialTokens ?? true;
    const bytes: number[] = [];
    let out = "";
    const flush = () => {
      out += new TextDecoder().decode(Uint8Array.from(bytes));
      bytes.length = 0;
    };
    for (const id of ids) {
      if (id < 256) bytes.push(id);
      else if (!skip) {
        flush();
        out += id === TINY_BOS ? "<bos>" : id === TINY_EOS ? "<eos>" : id === TINY_PAD ? "<pad>" : `<${id}>`;
      }
    }
    flush();
    return out;
  }

  applyChatTemplate(messages: ChatMessage[], options: { addGenerationPrompt?: boolean } = {}): string {
    return this.template.render({ messages, add_generation_prompt: options.addGenerationPrompt ?? true });
  }
}

/** A Hugging Face `tokenizer.json` (+ `tokenizer_config.json` with its chat template). */
export class HfTokenizer implements TextTokenizer {
  readonly bosTokenId: number | null;
  readonly eosTokenIds: number[];
  private readonly tokenizer: Tokenizer;
  private readonly template: Template;
  private readonly specials: Record<string, string>;

  constructor(tokenizerJson: unknown, tokenizerConfig: unknown = {}, extraEosTokenIds: number[] = []) {
    if (typeof tokenizerJson !== "object" || tokenizerJson === null || !("model" in tokenizerJson)) {
      throw new ModelRuntimeError("TOKENIZER_INVALID", "tokenizer.json has no model");
    }
    const cfg = (tokenizerConfig ?? {}) as Record<string, unknown>;
    try {
      this.tokenizer = new Tokenizer(tokenizerJson, cfg);
    } catch (err) {
      throw new ModelRuntimeError("TOKENIZER_INVALID", `tokenizer.json: ${(err as Error).message}`);
    }
    const tokenText = (v: unknown): string | undefined =>
      typeof v === "string"
        ? v
        : typeof v === "object" && v !== null
          ? (v as { content?: string }).content
          : undefined;
    this.specials = {};
    for (const key of ["bos_token", "eos_token", "pad_token", "unk_token"]) {
      const t = tokenText(cfg[key]);
      if (t !== undefined) this.specials[key] = t;
    }
    const idOf = (t: string | undefined) => (t === undefined ? undefined : this.tokenizer.token_to_id(t));
    this.bosTokenId = idOf(this.specials["bos_token"]) ?? null;
    const eos = idOf(this.specials["eos_token"]);
    this.eosTokenIds = [...new Set([...(eos === undefined ? [] : [eos]), ...extraEosTokenIds])];
    let template = cfg["chat_template"];
    if (Array.isArray(template)) {
      template = (template as { name: string; template: string }[]).find(
        (t) => t.name === "default",
      )?.template;
    }
    try {
      this.template = new Template(typeof template === "string" ? template : CHATML_TEMPLATE);
    } catch (err) {
      throw new ModelRuntimeError("TOKENIZER_INVALID", `chat_template: ${(err as Error).message}`);
    }
  }

  encode(text: string, options: { addSpecialTokens?: boolean } = {}): number[] {
    return this.tokenizer.encode(text, { add_special_tokens: options.addSpecialTokens ?? true }).ids;
  }

  decode(ids: number[], options: { skipSpecialTokens?: boolean } = {}): string {
    // @huggingface/tokenizers throws on an empty list ("token_ids must be a non-empty array"); a
    // generation that stopped at once, or an empty stream delta, decodes to "".
    if (ids.length === 0) return "";
    return this.tokenizer.decode(ids, { skip_special_tokens: options.skipSpecialTokens ?? true });
  }

  applyChatTemplate(messages: ChatMessage[], options: { addGenerationPrompt?: boolean } = {}): string {
    return this.template.render({
      messages,
      add_generation_prompt: options.addGenerationPrompt ?? true,
      ...this.specials,
    });
  }
}
