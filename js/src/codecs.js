// How arrays travel (the JS half of alwidget/_serialize.py): typed arrays from
// binary buffers, and reassembly of arrays that the kernel split into chunks.

const TYPES = {
  float32: Float32Array,
  float64: Float64Array,
  int8: Int8Array,
  uint8: Uint8Array,
  int16: Int16Array,
  uint16: Uint16Array,
  int32: Int32Array,
  uint32: Uint32Array,
};

/** A typed array viewing (or copying, when unaligned) a DataView/ArrayBuffer. */
export function toTyped(buffer, dtype) {
  const Type = TYPES[dtype];
  if (!Type) throw new Error(`unsupported dtype ${dtype}`);
  let buf = buffer;
  let offset = 0;
  let length = buffer.byteLength;
  if (ArrayBuffer.isView(buffer)) {
    buf = buffer.buffer;
    offset = buffer.byteOffset;
  }
  if (offset % Type.BYTES_PER_ELEMENT === 0) {
    return new Type(buf, offset, Math.floor(length / Type.BYTES_PER_ELEMENT));
  }
  // Unaligned view: copy the bytes into a fresh buffer.
  const copy = new Uint8Array(length);
  copy.set(new Uint8Array(buf, offset, length));
  return new Type(copy.buffer);
}

/** Collects `array` chunk messages until the matching `commit` arrives. */
export class ArrayAssembler {
  constructor() {
    this.pending = new Map(); // version -> Map(name -> typed array)
  }

  /** content: {version, name, dtype, total, offset}; buffer: DataView of the chunk. */
  add(content, buffer) {
    const { version, name, dtype, total, offset } = content;
    const Type = TYPES[dtype];
    if (!Type) throw new Error(`unsupported dtype ${dtype}`);
    let arrays = this.pending.get(version);
    if (!arrays) {
      arrays = new Map();
      this.pending.set(version, arrays);
    }
    let target = arrays.get(name);
    if (!target || target.length !== total || !(target instanceof Type)) {
      target = new Type(total);
      arrays.set(name, target);
    }
    const chunk = toTyped(buffer, dtype);
    target.set(chunk, offset);
    return chunk.byteLength;
  }

  /** All arrays of `version` (name -> typed array); forgets them and older versions. */
  take(version) {
    const arrays = this.pending.get(version) || new Map();
    for (const v of [...this.pending.keys()]) {
      if (v <= version) this.pending.delete(v);
    }
    return arrays;
  }
}
