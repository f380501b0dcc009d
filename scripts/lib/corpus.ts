// The demo's data: short labelled paragraphs, each distinct enough to pass the datanets
// service's dedupe and quality checks, plus helpers to derive duplicates from them.

/** Alice's rows: reviews of kitchen gear (labels make the version trainable as a classifier). */
export const ALICE_ROWS = [
  {
    text: "The cast iron skillet arrived seasoned and heats evenly across the whole surface, searing steaks beautifully.",
    label: "positive",
  },
  {
    text: "This kettle whistles loudly when the water boils, and the handle stays cool enough to pour without a towel.",
    label: "positive",
  },
  {
    text: "After two weeks the blender jar cracked near the base and started leaking sticky smoothie onto the counter.",
    label: "negative",
  },
  {
    text: "Our new chef knife keeps a sharp edge through onions, tomatoes and crusty bread without any sharpening at all.",
    label: "positive",
  },
  {
    text: "The toaster burns one side of every slice while leaving the other pale, no matter which setting we choose.",
    label: "negative",
  },
  {
    text: "A sturdy wooden cutting board that resists deep grooves and cleans up quickly with warm soapy water.",
    label: "positive",
  },
  {
    text: "The rice cooker lid rattles constantly and the bottom layer of grains turns into a crunchy scorched crust.",
    label: "negative",
  },
] as const;

/** Bob's rows: reviews of outdoor gear. */
export const BOB_ROWS = [
  {
    text: "This tent pitched in five minutes during a windy evening and kept every sleeping bag dry through heavy rain.",
    label: "positive",
  },
  {
    text: "The hiking boots gave me painful blisters on the first trail and the laces snapped before the summit.",
    label: "negative",
  },
  {
    text: "A lightweight camping stove that boils a liter of water quickly even at altitude, with very little fuel.",
    label: "positive",
  },
  {
    text: "The headlamp battery died after barely an hour and the strap slipped down over my eyes on every climb.",
    label: "negative",
  },
  {
    text: "Our folding chairs survived a whole summer of beach trips, sand and salt spray without rusting or wobbling.",
    label: "positive",
  },
  {
    text: "The water filter clogged on the second day of the canoe trip and the pump handle broke off completely.",
    label: "negative",
  },
] as const;

/** The spammer's few genuinely new rows (the rest of the submission copies others). */
export const SPAM_NEW_ROWS = [
  {
    text: "The garden hose nozzle sprays a gentle shower for seedlings and a strong jet for cleaning muddy boots.",
    label: "positive",
  },
  {
    text: "This umbrella flipped inside out at the first gust and two of its thin metal ribs bent beyond repair.",
    label: "negative",
  },
] as const;

/** A near duplicate: the same sentence with a few words changed. */
export function nearDuplicate(text: string): string {
  return text.replace(/\bthe\b/, "that").replace(/\band\b/, "plus");
}

/**
 * What the consumer asks the small model (the version's sentiment classifier): reviews in the
 * contributors' own words, so the rows that taught the model those words have positive influence
 * on its answers and their contributors are paid.
 */
export const SMALL_MODEL_PROMPTS = [
  "The cast iron skillet heats evenly and sears steaks beautifully; a sturdy pan that cleans up quickly.",
  "The headlamp battery died after barely an hour and the strap slipped, and the water filter clogged too.",
] as const;
