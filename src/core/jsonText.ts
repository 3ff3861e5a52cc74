/**
 * A json/jsonb value given as its JSON text, already serialized: written as that text, with the
 * checks any JSON value gets (no NUL, no lone surrogate). Queue workers receive json values this
 * way (the payload carries them as text), so a value is not parsed into objects only to be
 * serialized again; callers may pass one too, for JSON they hold as text.
 *
 * Postgres checks the syntax (json) or parses it (jsonb): text that is not JSON fails with
 * DATA_ERROR naming the row and column.
 */
export class JsonText {
  readonly text: string;
  constructor(text: string) {
    if (typeof text !== 'string') throw new TypeError('JsonText takes a string of JSON text');
    this.text = text;
  }
  /** Inside another JSON value (a json column holding an array of them), the parsed value. */
  toJSON(): unknown {
    return JSON.parse(this.text);
  }
}
