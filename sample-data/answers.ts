/**
 * How support agents answer: an optional opener, a body that quotes the fact, an optional closer.
 * `{p}` is the product name, `{fact}` the checkable fact and `{steps}` the full procedure that
 * contains it. No body starts a sentence with `{fact}` or `{steps}`, so the fact keeps its catalog
 * casing and appears verbatim in every clean answer.
 */
import type { ProductFact, QuestionType, Symptom, Topic } from './catalog';
import type { Random } from '../lib/seeded-random';

const bodies: Record<Exclude<Topic, Symptom>, readonly string[]> = {
  batteryLife: [
    'The {p} runs for about {fact} on a full charge.',
    'You can expect up to {fact} of battery life from the {p}, depending on settings.',
    'Battery life on the {p} is rated at {fact}.',
  ],
  screenSize: ['The screen on the {p} measures {fact} diagonally.', 'The {p} display is {fact} across the diagonal.'],
  weight: ['The {p} weighs {fact}.', 'Without accessories, the {p} comes in at {fact}.'],
  waterResistance: [
    'The {p} is rated {fact} for water resistance.',
    'Water resistance on the {p}: {fact}. Please rinse it with fresh water after contact with salt water.',
  ],
  maxResolution: ['The {p} supports a maximum resolution of {fact}.', 'Top resolution on the {p} is {fact}.'],
  refreshRate: ['The {p} refreshes at up to {fact}.', 'The panel on the {p} runs at {fact}.'],
  wifi: ['The {p} supports {fact}.', 'Wireless on the {p} is {fact}, and it works with older routers too.'],
  charging: ['The {p} charges at up to {fact}.', 'Use a charger rated {fact} or higher to get the fastest charging on the {p}.'],
  storage: ['The {p} comes with {fact}.', 'Storage on the {p}: {fact}.'],
  ports: ['The {p} has {fact}.', 'On the {p} you will find {fact}.'],
  platforms: ['The {p} works with {fact}.', 'The {p} is compatible with {fact}.'],
  bluetooth: ['The {p} uses {fact}.', 'It connects over {fact}, and it pairs with any device that has Bluetooth 4.0 or newer.'],
  codecs: ['The {p} supports {fact}.', 'Supported codecs on the {p} are {fact}.'],
  streaming: ['The {p} supports {fact}.', 'You can stream to the {p} with {fact}.'],
  mounts: ['The {p} fits {fact}.', 'For mounting, the {p} uses {fact}.'],
  warrantyLength: [
    'The {p} is covered for {fact} from the date of purchase.',
    'Our warranty on the {p} lasts {fact} and starts on the day you bought it.',
  ],
  warrantyCoverage: [
    'The {p} warranty covers {fact}.',
    'Under warranty we repair or replace {fact} on the {p}; accidental damage is not included unless stated.',
  ],
  reset: [
    'To reset the {p}, {steps}.',
    'A soft reset keeps your settings: {steps}.',
    'Here is how: {steps}. That restarts the {p} without erasing anything.',
  ],
  pair: ['To pair the {p}, {steps}.', 'Pairing takes about a minute: {steps}.'],
  updateFirmware: ['To update the {p}, {steps}.', 'Firmware updates install like this: {steps}. Keep the {p} powered until it finishes.'],
  factoryReset: [
    'To factory reset the {p}, {steps}. This erases all settings and data.',
    'Back up anything you need first. Then {steps}, and the {p} will start up as new.',
  ],
};

/** Every symptom is answered with one of these, filled with that symptom's fix. */
const troubleshootingBodies: readonly string[] = [
  'Please try this: {steps}.',
  'This fixes it in most cases: {steps}.',
  'First, {steps}. If the {p} still has the problem, we can set up a repair.',
];

const openers: Record<QuestionType, readonly string[]> = {
  spec: ['', '', 'Thanks for reaching out! ', 'Happy to help. ', 'Good question. '],
  'how-to': ['', '', 'Happy to help with that. ', 'Sure thing! ', 'Thanks for contacting support. '],
  troubleshooting: ['', 'Sorry to hear that! ', 'Sorry about the trouble. ', 'That sounds frustrating. '],
  warranty: ['', '', 'Thanks for asking! ', 'Good question. '],
  compatibility: ['', '', 'Thanks for reaching out! ', 'Happy to help. '],
};
const closers: readonly string[] = [
  '',
  '',
  ' Let me know if there is anything else I can help with.',
  ' Hope that helps!',
  ' If you have more questions, just reply to this message.',
  ' Have a great day!',
];
const repairOffer = ' If that does not fix it, reply here and we will arrange a repair under warranty.';

/** An answer split around its fact, so noise can be added to the text around the fact only. */
export interface AnswerParts {
  before: string;
  fact: string;
  after: string;
}

export const joinAnswer = (parts: AnswerParts) => parts.before + parts.fact + parts.after;

export function composeAnswer(random: Random, product: string, fact: ProductFact): AnswerParts {
  const templates = fact.type === 'troubleshooting' ? troubleshootingBodies : bodies[fact.topic as Exclude<Topic, Symptom>];
  const body = random.pick(templates).replaceAll('{p}', product);
  // The fact sits either at {fact} or inside the procedure at {steps}.
  const [bodyBefore = '', bodyAfter = ''] = body.split(/\{fact\}|\{steps\}/);
  const quoted = body.includes('{steps}') && fact.steps ? fact.steps : fact.fact;
  const at = quoted.indexOf(fact.fact);
  const opener = random.pick(openers[fact.type]);
  const closer = fact.type === 'troubleshooting' && random.chance(0.3) ? repairOffer : random.pick(closers);
  return {
    before: opener + bodyBefore + quoted.slice(0, at),
    fact: fact.fact,
    after: quoted.slice(at + fact.fact.length) + bodyAfter + closer,
  };
}
