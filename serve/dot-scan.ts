/**
 * The dot product of one query vector with every stored vector: the whole cost of an exact embedding
 * search. JavaScript multiplies one float at a time (about 35 ms for 100,000 vectors of 384 on this
 * machine's CPU); WebAssembly SIMD multiplies four at once and reads the vectors straight from its
 * memory (about 7 ms), so the vectors are kept in a WebAssembly.Memory. The JavaScript loop remains for
 * vectors whose length is not a multiple of 8 and runtimes without SIMD.
 *
 * The module is one function, assembled below from its instructions (Node ships no WAT assembler):
 *
 *   (func (export "scores") (param $vectors $query $rows $dims $out i32)
 *     ;; for each row: two f32x4 running sums over 8 floats a step, then the four lanes added,
 *     ;; stored as the row's f32 score at $out + 4 * row
 *     dimBytes = dims * 4; row = vectors
 *     block  if rows == 0 break
 *       loop  acc0 = acc1 = 0; d = 0
 *         loop  acc0 += load(row + d) * load(query + d); acc1 += load(row + d + 16) * load(query + d + 16)
 *               d += 32; continue if d < dimBytes
 *         store(out + 4 * r, lane0 + lane1 + lane2 + lane3 of acc0 + acc1)
 *         row += dimBytes; r += 1; continue if r < rows
 */

export interface DotScanner {
  /** The stored vectors, row n at [n * dims, (n + 1) * dims) (in WebAssembly memory when SIMD is used). */
  readonly vectors: Float32Array;
  readonly simd: boolean;
  /** One score per stored vector; the array is reused, so read it before the next call. */
  scores(query: Float32Array): ArrayLike<number>;
}

const leb = (value: number): number[] => {
  const bytes: number[] = [];
  do {
    const low = value & 0x7f;
    value >>>= 7;
    bytes.push(value ? low | 0x80 : low);
  } while (value);
  return bytes;
};
const section = (id: number, body: number[]) => [id, ...leb(body.length), ...body];
const name = (text: string) => [...leb(text.length), ...Array.from(text, (c) => c.charCodeAt(0))];

/** The module's bytes: memory imported as env.memory, one exported function `scores`. */
function scanModule(): Uint8Array {
  const [VECTORS, QUERY, ROWS, DIMS, OUT, R, D, ROW, DIM_BYTES, ACC0, ACC1] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
  const get = (local: number) => [0x20, local];
  const set = (local: number) => [0x21, local];
  const tee = (local: number) => [0x22, local];
  const i32 = (value: number) => [0x41, ...leb(value)]; // small non-negative constants only
  const [I32_ADD, I32_MUL, I32_EQZ, I32_LT_U, F32_ADD, BLOCK, LOOP, END, BR_IF] = [0x6a, 0x6c, 0x45, 0x49, 0x92, 0x02, 0x03, 0x0b, 0x0d];
  const v128Load = (offset: number) => [0xfd, 0x00, 2, ...leb(offset)]; // align 4 bytes
  const v128Zero = [0xfd, 0x0c, ...new Array<number>(16).fill(0)];
  const [F32X4_ADD, F32X4_MUL] = [
    [0xfd, 0xe4, 0x01],
    [0xfd, 0xe6, 0x01],
  ];
  const lane = (n: number) => [0xfd, 0x1f, n];
  const accumulate = (acc: number, offset: number) => [
    ...get(acc),
    ...get(ROW), ...get(D), I32_ADD, ...v128Load(offset),
    ...get(QUERY), ...get(D), I32_ADD, ...v128Load(offset),
    ...F32X4_MUL, ...F32X4_ADD, ...set(acc),
  ]; // prettier-ignore
  const code = [
    ...get(DIMS), ...i32(4), I32_MUL, ...set(DIM_BYTES),
    ...get(VECTORS), ...set(ROW),
    BLOCK, 0x40,
    ...get(ROWS), I32_EQZ, BR_IF, 0,
    LOOP, 0x40,
    ...v128Zero, ...set(ACC0), ...v128Zero, ...set(ACC1), ...i32(0), ...set(D),
    LOOP, 0x40,
    ...accumulate(ACC0, 0), ...accumulate(ACC1, 16),
    ...get(D), ...i32(32), I32_ADD, ...tee(D), ...get(DIM_BYTES), I32_LT_U, BR_IF, 0,
    END,
    ...get(OUT), ...get(R), ...i32(4), I32_MUL, I32_ADD,
    ...get(ACC0), ...get(ACC1), ...F32X4_ADD, ...tee(ACC0), ...lane(0),
    ...get(ACC0), ...lane(1), F32_ADD, ...get(ACC0), ...lane(2), F32_ADD, ...get(ACC0), ...lane(3), F32_ADD,
    0x38, 2, 0, // f32.store align 4, offset 0
    ...get(ROW), ...get(DIM_BYTES), I32_ADD, ...set(ROW),
    ...get(R), ...i32(1), I32_ADD, ...tee(R), ...get(ROWS), I32_LT_U, BR_IF, 0,
    END,
    END,
    END,
  ]; // prettier-ignore
  const body = [2, 4, 0x7f, 2, 0x7b, ...code]; // locals: 4 i32 (r, d, row, dimBytes), 2 v128 (acc0, acc1)
  return new Uint8Array([
    ...[0x00, 0x61, 0x73, 0x6d, 1, 0, 0, 0],
    ...section(1, [1, 0x60, 5, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0]), // type: (i32 x 5) -> ()
    ...section(2, [1, ...name('env'), ...name('memory'), 0x02, 0x00, 1]), // import env.memory, at least 1 page
    ...section(3, [1, 0]),
    ...section(7, [1, ...name('scores'), 0x00, 0]),
    ...section(10, [1, ...leb(body.length), ...body]),
  ]);
}

/** The part of the WebAssembly API used here: Node has it, but the project compiles without lib "dom", which declares it. */
interface WasmApi {
  validate(bytes: Uint8Array): boolean;
  Module: new (bytes: Uint8Array) => WasmModule;
  Instance: new (module: WasmModule, imports: object) => { exports: Record<string, unknown> };
  Memory: new (descriptor: { initial: number }) => { buffer: ArrayBuffer };
}
type WasmModule = { readonly compiledScan: unique symbol };
const wasm = (globalThis as unknown as { WebAssembly?: WasmApi }).WebAssembly;

let compiled: WasmModule | null | undefined;
/** The compiled module, or null where this runtime has no WebAssembly SIMD. */
function scanModuleOnce(): WasmModule | null {
  if (compiled === undefined) {
    const bytes = scanModule();
    compiled = wasm?.validate(bytes) ? new wasm.Module(bytes) : null;
  }
  return compiled;
}

const PAGE_BYTES = 65_536;

function simdScanner(vectors: Float32Array, dims: number, module: WasmModule, api: WasmApi): DotScanner {
  const rows = vectors.length / dims;
  const queryAt = vectors.length * 4; // bytes; vectors from 0, then the query, then the scores
  const scoresAt = queryAt + dims * 4;
  const memory = new api.Memory({ initial: Math.max(1, Math.ceil((scoresAt + rows * 4) / PAGE_BYTES)) });
  const instance = new api.Instance(module, { env: { memory } });
  const scan = instance.exports.scores as (vectors: number, query: number, rows: number, dims: number, out: number) => void;
  // The memory never grows, so these views stay valid.
  const stored = new Float32Array(memory.buffer, 0, vectors.length);
  stored.set(vectors);
  const query = new Float32Array(memory.buffer, queryAt, dims);
  const scores = new Float32Array(memory.buffer, scoresAt, rows);
  return {
    vectors: stored,
    simd: true,
    scores(vector) {
      query.set(vector);
      scan(0, queryAt, rows, dims, scoresAt);
      return scores;
    },
  };
}

function javascriptScanner(vectors: Float32Array, dims: number): DotScanner {
  const rows = vectors.length / dims;
  const scores = new Float64Array(rows);
  const tail = dims - (dims % 4);
  return {
    vectors,
    simd: false,
    scores(query) {
      for (let n = 0, base = 0; n < rows; n++, base += dims) {
        // Four running sums: independent additions the CPU can overlap.
        let s0 = 0,
          s1 = 0,
          s2 = 0,
          s3 = 0;
        for (let d = 0; d < tail; d += 4) {
          s0 += vectors[base + d]! * query[d]!;
          s1 += vectors[base + d + 1]! * query[d + 1]!;
          s2 += vectors[base + d + 2]! * query[d + 2]!;
          s3 += vectors[base + d + 3]! * query[d + 3]!;
        }
        for (let d = tail; d < dims; d++) s0 += vectors[base + d]! * query[d]!;
        scores[n] = s0 + s1 + s2 + s3;
      }
      return scores;
    },
  };
}

/**
 * A scanner over `vectors` (copied into WebAssembly memory when SIMD is used). `simd: false` forces the
 * JavaScript loop (the tests compare the two).
 */
export function createDotScanner(vectors: Float32Array, dims: number, options: { simd?: boolean } = {}): DotScanner {
  const module = options.simd === false || dims % 8 !== 0 ? null : scanModuleOnce();
  if (module && wasm) {
    try {
      return simdScanner(vectors, dims, module, wasm);
    } catch (error) {
      if (!(error instanceof RangeError)) throw error; // more memory than WebAssembly may have (4 GiB)
    }
  }
  return javascriptScanner(vectors, dims);
}
