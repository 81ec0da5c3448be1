/**
 * Picking the next token from one row of logits: argmax for greedy decoding, or temperature and top-p
 * (nucleus) sampling driven by a seeded uniform source (`mulberry32(seed).next` from lib/seeded-random.ts).
 * Before either, the repetition controls may change the logits, in the order transformers applies its
 * processors (repetition penalty, then the n-gram ban, then temperature and top-p when sampling).
 */

export function argmax(logits: Float32Array): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i]! > logits[best]!) best = i;
  return best;
}

/**
 * Greedy with an end rule: the answer ends (the likeliest end token is picked) when the end tokens
 * together have at least `endProbability` of the softmax; otherwise the likeliest other token is
 * picked. Plain argmax ends an answer whenever one end token beats every single word, which it does
 * at most sentence ends, since the ways to go on share their probability among many tokens: a model
 * that ends 30% of its answers after "Yes, it fits." says only that under plain greedy. With 0.5 the
 * answer ends when ending is more likely than going on.
 */
export function greedyWithEnd(logits: Float32Array, endIds: readonly number[], endProbability: number): number {
  const max = logits[argmax(logits)]!;
  let total = 0;
  for (const logit of logits) total += Math.exp(logit - max);
  let end = 0;
  let likeliestEnd = endIds[0]!;
  for (const id of endIds) {
    end += Math.exp(logits[id]! - max);
    if (logits[id]! > logits[likeliestEnd]!) likeliestEnd = id;
  }
  if (end >= endProbability * total) return likeliestEnd;
  const ends = new Set(endIds);
  let best = -1;
  for (let id = 0; id < logits.length; id++) if (!ends.has(id) && (best < 0 || logits[id]! > logits[best]!)) best = id;
  return best;
}

/**
 * Temperature, then top-p (nucleus) sampling over the renormalized kept tokens. Draws exactly one
 * number from `random` per call, so a batch's draws (one per row per step) stay in step with the seed.
 */
export function sample(logits: Float32Array, temperature: number, topP: number, random: () => number): number {
  const max = logits[argmax(logits)]!;
  const weights = new Float64Array(logits.length);
  let total = 0;
  for (let id = 0; id < logits.length; id++) total += weights[id] = Math.exp((logits[id]! - max) / temperature);
  // The nucleus is every token at least as likely as the cutoff weight. A numeric sort of the weights
  // alone finds it (about 9 ms for 49k tokens, against 60 ms for sorting ids with a comparator).
  const sorted = weights.slice().sort().reverse();
  let cutoff = sorted[0]!;
  for (let n = 0, cumulative = 0; n < sorted.length && cumulative < topP * total; n++) {
    cutoff = sorted[n]!;
    cumulative += cutoff;
  }
  let keptWeight = 0;
  for (const weight of weights) if (weight >= cutoff) keptWeight += weight;
  let threshold = random() * keptWeight;
  let last = 0;
  for (let id = 0; id < weights.length; id++) {
    if (weights[id]! < cutoff) continue;
    last = id;
    threshold -= weights[id]!;
    if (threshold < 0) return id;
  }
  return last; // rounding left a sliver of threshold: the last kept token
}

/**
 * transformers' RepetitionPenaltyLogitsProcessor, then its NoRepeatNGramLogitsProcessor, over `answer`
 * (the tokens generated so far) alone: unlike the library's, the prompt is never counted, because a
 * grounded prompt carries retrieved answers the model should be free to quote. Returns a changed copy.
 *
 * - penalty (>= 1; 1 is off): the logit of every token already in the answer, once per token, is divided
 *   by it, or multiplied when negative;
 * - ngramSize (0 is off): a token that would complete an n-gram of that many tokens the answer already
 *   holds gets -Infinity, so it is never chosen.
 */
export function controlRepetition(logits: Float32Array, answer: readonly number[], penalty: number, ngramSize: number): Float32Array {
  const scores = logits.slice();
  if (penalty !== 1) {
    // As torch computes it: float32 logits and the penalty rounded to float32. The quotient (or product)
    // of two float32 numbers, worked out in double and rounded to float32 by the store, is the correctly
    // rounded float32 result, so both sides get the same bits and the same argmax.
    const factor = Math.fround(penalty);
    for (const id of new Set(answer)) {
      const score = scores[id]!;
      scores[id] = score < 0 ? score * factor : score / factor;
    }
  }
  if (ngramSize > 0) for (const id of bannedNextTokens(answer, ngramSize)) scores[id] = -Infinity;
  return scores;
}

/**
 * Tokens that would repeat an n-gram of `answer`: the last token of every n-gram that begins with the
 * answer's last n - 1 tokens. About (answer length x n) comparisons a step, nothing for typical answers.
 */
export function bannedNextTokens(answer: readonly number[], ngramSize: number): number[] {
  const prefixStart = answer.length - ngramSize + 1;
  const banned: number[] = [];
  for (let start = 0; start + ngramSize <= answer.length; start++) {
    let matches = true;
    for (let k = 0; k < ngramSize - 1 && matches; k++) matches = answer[start + k] === answer[prefixStart + k];
    if (matches) banned.push(answer[start + ngramSize - 1]!);
  }
  return banned;
}
