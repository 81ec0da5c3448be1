/**
 * How customers ask. A question is a context sentence (optional), a template for the topic with
 * the product name filled in, and surface variation real support inboxes have: greetings, sign-offs,
 * lower case, missing question marks and the odd typo.
 *
 * Templates for the same topic differ in wording, not just punctuation, and context sentences are
 * long (about 30 to 45 characters), so two questions that differ in template or context stay below the
 * near-duplicate threshold (character 3-gram Jaccard 0.8). The generator gives each (product, topic,
 * template, context) slot to at most one clean row, so near duplicates exist only where planted.
 */
import type { Topic } from './catalog';
import type { Random } from '../lib/seeded-random';

export const questionTemplates: Record<Topic, readonly string[]> = {
  batteryLife: [
    'What is the battery life of the {p}?',
    'How long does the battery last on the {p}?',
    'How many hours can I use my {p} on one charge?',
    '{p} battery life?',
    'How long will one charge keep the {p} going?',
  ],
  screenSize: [
    'What size is the screen on the {p}?',
    'How big is the {p} display?',
    'Screen size of the {p}?',
    'How large is the display of the {p} in inches?',
  ],
  weight: ['How much does the {p} weigh?', 'What is the weight of the {p}?', 'Is the {p} heavy to carry around?', '{p} weight please'],
  waterResistance: [
    'Is the {p} waterproof?',
    'What water resistance rating does the {p} have?',
    'Can I take the {p} out in the rain?',
    'Will my {p} survive getting splashed?',
  ],
  maxResolution: [
    'What is the maximum resolution of the {p}?',
    'Does the {p} do 4K?',
    'Highest resolution the {p} can handle?',
    'How sharp is the picture on the {p}, in pixels?',
  ],
  refreshRate: [
    'What is the refresh rate of the {p}?',
    'Is the {p} good for gaming, how many Hz?',
    'How many hertz does the {p} screen run at?',
  ],
  wifi: [
    'What wifi standard does the {p} support?',
    'Does the {p} have Wi-Fi 6?',
    'Which Wi-Fi version is built into the {p}?',
    'Is the {p} using the latest wireless standard?',
  ],
  charging: [
    'How fast does the {p} charge?',
    'What is the max charging wattage of the {p}?',
    'Which charger power does the {p} support?',
    'How many watts can the {p} take when charging?',
  ],
  storage: [
    'What storage options does the {p} come in?',
    'Storage capacity on the {p}?',
    'Is there a bigger storage version of the {p}?',
    '{p} storage sizes?',
  ],
  ports: [
    'What ports does the {p} have?',
    'Is there a USB-C port on the {p}?',
    'Which connectors are on the {p}?',
    'What can I plug into the {p}?',
  ],
  platforms: [
    'Does the {p} work with iPhone?',
    'Is the {p} compatible with Android?',
    'Which operating systems does the {p} support?',
    'Will the {p} work with my Windows PC?',
  ],
  bluetooth: ['What Bluetooth version does the {p} use?', 'Which bluetooth does the {p} have?', 'Is the {p} Bluetooth 5 or newer?'],
  codecs: ['Which audio codecs does the {p} support?', 'Does the {p} support aptX or LDAC?', 'What codecs can the {p} stream with?'],
  streaming: ['Does the {p} support AirPlay?', 'Can I cast to the {p} from my phone?', 'Which streaming protocols work with the {p}?'],
  mounts: ['Can I wall-mount the {p}?', 'What mount does the {p} use?', 'Will a standard bracket fit the {p}?'],
  reset: [
    'How do I reset my {p}?',
    'What is the way to restart the {p} when it freezes?',
    'My {p} is frozen, how do I do a soft reset?',
    'reset {p} steps',
  ],
  pair: [
    'How do I pair the {p} with my phone?',
    'How can I connect the {p} over Bluetooth?',
    'Pairing the {p} to a new device, what are the steps?',
    'How do I put the {p} into pairing mode?',
  ],
  updateFirmware: [
    'How do I update the firmware on the {p}?',
    'Is there a software update for the {p}?',
    'How can I get the latest firmware onto my {p}?',
  ],
  factoryReset: [
    'What are the steps to factory reset the {p}?',
    'Selling my {p}, how do I wipe it clean?',
    'How to restore the {p} to its out-of-the-box state?',
  ],
  wontTurnOn: [
    "My {p} won't turn on",
    'The {p} is dead, pressing power does nothing.',
    '{p} not powering on!!',
    "Why won't my {p} switch on?",
  ],
  wontCharge: ["My {p} isn't charging", "The {p} won't charge when I plug it in.", 'Charging light on the {p} never comes on, help'],
  noSound: ["There's no sound coming from my {p}", "The {p} is connected but I can't hear anything.", '{p} audio not working'],
  bluetoothDrops: [
    'My {p} keeps disconnecting from Bluetooth',
    'Bluetooth on the {p} cuts out every few minutes.',
    'Why does the {p} drop its connection to my phone?',
  ],
  wifiDrops: [
    'My {p} keeps losing wifi',
    'The {p} disconnects from the internet randomly.',
    'Wi-Fi on the {p} is really unstable, what can I do?',
  ],
  screenFlicker: ['The screen on my {p} flickers', 'My {p} display keeps blinking on and off.', '{p} screen flickering, any fix?'],
  overheating: [
    'My {p} gets really hot',
    'The {p} is overheating and shuts itself off.',
    'Is it normal that the {p} is so warm to the touch?',
  ],
  batteryDrain: [
    'The battery on my {p} drains too fast',
    'My {p} loses charge overnight when idle.',
    'Why is the {p} battery dying so quickly?',
  ],
  warrantyLength: [
    "What's the warranty on the {p}?",
    'How long is the {p} covered under warranty?',
    'Does the {p} come with a guarantee, and for how long?',
    'warranty period for {p}?',
  ],
  warrantyCoverage: [
    'Which repairs are included in the {p} warranty?',
    'Is the battery covered by the warranty on the {p}?',
    'If my {p} breaks, what is covered?',
  ],
};

/** Who is asking; said before the question. */
const situations: readonly string[] = [
  'I bought this last month for my daughter.',
  'We use a few of these in our office.',
  'Got it as a birthday present.',
  'Had it for about two weeks now.',
  'My husband set it up and now I am stuck.',
  'Customer since 2019, first time writing in.',
  'Ordered it from your online store on Friday.',
  'Just unboxed mine this morning.',
  'Bought a refurbished unit locally.',
  'Our school bought a batch of these.',
  'A client at my repair shop asked.',
  'Long-time fan of your brand here.',
  'Setting this up for a relative abroad.',
  'We gave one to each new employee.',
  'I use it every day on my commute.',
  'Got mine in the holiday sale.',
  'Second one I have owned, the first broke.',
];
/** Why they are asking; said before the question, after a situation when both are used. */
const motives: readonly string[] = [
  'Want to double check before I order.',
  "The manual in the box isn't clear on this.",
  'Comparing it with two other models.',
  'Sorry if this has been asked before.',
  "Your website's product page doesn't say.",
  'Taking it on a trip next month.',
  'The forums had nothing useful.',
  'Asking for my elderly father.',
  'Chat support was closed, so writing here.',
  'My return window closes this week.',
  'The store gave me a different answer.',
  'Your phone line kept me on hold for an hour.',
  'The quick start card skips this part.',
  'A friend told me something different.',
  'The reviews online disagree on this.',
];

/** Context slots: 0 is none, then each sentence alone, then every situation + motive pair. */
export const contextSlotCount = 1 + situations.length + motives.length + situations.length * motives.length;

/** Slots are handed out tier by tier (none, one sentence, two) so short questions come first. */
export const contextTier = (slot: number) => (slot === 0 ? 0 : slot <= situations.length + motives.length ? 1 : 2);

function contextFor(slot: number): string {
  if (slot === 0) return '';
  if (slot <= situations.length) return situations[slot - 1]!;
  if (slot <= situations.length + motives.length) return motives[slot - situations.length - 1]!;
  const pair = slot - situations.length - motives.length - 1;
  return `${situations[Math.floor(pair / motives.length)]} ${motives[pair % motives.length]}`;
}

/** Misspellings seen in real tickets; applied to template words only, never to the product name. */
const typos: Record<string, string> = {
  battery: 'batery',
  warranty: 'warrenty',
  Bluetooth: 'bluetooh',
  firmware: 'firmwear',
  waterproof: 'water proof',
  compatible: 'compatable',
  charge: 'chrage',
  screen: 'sceen',
  resolution: 'resoluton',
  update: 'updat',
  does: 'dose',
  weigh: 'wiegh',
  display: 'dispaly',
  connect: 'conect',
  storage: 'storrage',
  factory: 'factroy',
  really: 'realy',
};

function withTypo(random: Random, template: string): string {
  const known = Object.keys(typos).filter((word) => new RegExp(`\\b${word}\\b`).test(template));
  if (known.length > 0) {
    const word = random.pick(known);
    return template.replace(new RegExp(`\\b${word}\\b`), typos[word]!);
  }
  // No known misspelling: swap two letters inside one longer word.
  const words = template.split(' ');
  const candidates = words.map((w, i) => i).filter((i) => /^[a-z]{5,}$/.test(words[i]!));
  if (candidates.length === 0) return template;
  const i = random.pick(candidates);
  const w = words[i]!;
  const at = 1 + random.int(w.length - 3);
  words[i] = w.slice(0, at) + w[at + 1] + w[at] + w.slice(at + 2);
  return words.join(' ');
}

const greetings = ['Hi,', 'Hello!', 'Hey there,', 'Good morning.', 'Hi team,'];
const signOffs = ['Thanks!', 'Thank you.', 'Thanks in advance.', 'Cheers'];

/** Writes one customer question for a (template, context) slot, with seeded surface variation. */
export function composeQuestion(random: Random, template: string, product: string, contextSlot: number): string {
  const core = (random.chance(0.05) ? withTypo(random, template) : template).replaceAll('{p}', product);
  const context = contextFor(contextSlot);
  let question = context ? `${context} ${core}` : core;
  if (random.chance(0.12)) {
    const greeting = random.pick(greetings);
    const rest = greeting.endsWith(',') ? question[0]!.toLowerCase() + question.slice(1) : question;
    question = `${greeting} ${rest}`;
  }
  if (random.chance(0.08)) question = `${question} ${random.pick(signOffs)}`;
  if (question.endsWith('?') && random.chance(0.1)) question = random.chance(0.7) ? question.slice(0, -1) : `${question}?`;
  const casing = random.next();
  if (casing < 0.06) question = question.toLowerCase();
  else if (casing < 0.07) question = question.toUpperCase();
  return question;
}
