/**
 * Little-endian byte writing and reading with unsigned varints (up to 2^53),
 * shared by the sketch codec and the aggregate codec.
 */
export class ByteWriter {
  buf = new Uint8Array(256);
  len = 0;
  #view = new DataView(this.buf.buffer);

  #room(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
    this.#view = new DataView(next.buffer);
  }

  byte(b: number): void {
    this.#room(1);
    this.buf[this.len++] = b;
  }

  varint(v: number): void {
    while (v >= 0x80) {
      this.byte((v % 0x80) | 0x80);
      v = Math.floor(v / 0x80);
    }
    this.byte(v);
  }

  f64(v: number): void {
    this.#room(8);
    this.#view.setFloat64(this.len, v, true);
    this.len += 8;
  }

  raw(bytes: Uint8Array): void {
    this.#room(bytes.length);
    this.buf.set(bytes, this.len);
    this.len += bytes.length;
  }

  bytes(): Uint8Array {
    return this.buf.slice(0, this.len);
  }
}

export class ByteReader {
  pos = 0;
  readonly #view: DataView;

  constructor(readonly u8: Uint8Array) {
    this.#view = new DataView(u8.buffer, u8.byteOffset, u8.byteLength);
  }

  get done(): boolean {
    return this.pos >= this.u8.length;
  }

  byte(): number {
    if (this.pos >= this.u8.length) throw new Error("truncated record");
    return this.u8[this.pos++];
  }

  varint(): number {
    let v = 0;
    let mul = 1;
    for (;;) {
      const b = this.byte();
      v += (b & 0x7f) * mul;
      if (b < 0x80) return v;
      mul *= 0x80;
      if (mul > 2 ** 56) throw new Error("corrupt varint");
    }
  }

  f64(): number {
    if (this.pos + 8 > this.u8.length) throw new Error("truncated record");
    const v = this.#view.getFloat64(this.pos, true);
    this.pos += 8;
    return v;
  }

  raw(n: number): Uint8Array {
    if (this.pos + n > this.u8.length) throw new Error("truncated record");
    const out = this.u8.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }
}
