/** Quote an identifier the way Postgres's quote_ident does, always (no keyword guessing). */
export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}
