/**
 * How many characters (Unicode code points) `s` has: limits documented "in characters" count
 * these, as MySQL's VARCHAR(n) does, not UTF-16 units (an emoji is one character, two units).
 */
export function characterCount(s: string): number {
  let count = s.length;
  for (let i = 0; i < s.length - 1; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const next = s.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        count--;
        i++;
      }
    }
  }
  return count;
}
