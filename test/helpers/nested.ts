/** A JSON value `depth` levels deep, alternating objects and arrays: the shape of a poisoned job body. */
export function nested(depth: number): unknown {
  let value: unknown = 1;
  for (let i = 0; i < depth; i++) value = i % 2 === 0 ? { a: value } : [value];
  return value;
}
