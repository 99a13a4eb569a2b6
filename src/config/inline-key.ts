import { createPublicKey, type KeyObject } from 'node:crypto';
import { ChronosError, errorMessage } from '../errors.js';

/** Parse CHRONOS_FIRE_PUBLIC_KEY (PEM or JWK JSON) into a public KeyObject, refusing symmetric keys. */
export function parseInlinePublicKey(text: string): KeyObject {
  const trimmed = text.trim();
  let jwk: { kty?: string } | undefined;
  try {
    if (trimmed.startsWith('{')) jwk = JSON.parse(trimmed) as { kty?: string };
  } catch (err) {
    throw new ChronosError('invalid_config', `not valid JWK JSON: ${errorMessage(err)}`);
  }
  if (jwk?.kty === 'oct') {
    throw new ChronosError(
      'invalid_config',
      'a symmetric (kty "oct") key cannot verify fire tokens; give the public key',
    );
  }
  let key: KeyObject;
  try {
    key = jwk
      ? createPublicKey({ key: jwk as never, format: 'jwk' })
      : createPublicKey(trimmed.replace(/\\n/g, '\n'));
  } catch (err) {
    throw new ChronosError('invalid_config', `not a PEM or JWK public key: ${errorMessage(err)}`);
  }
  if (key.type !== 'public') throw new ChronosError('invalid_config', 'not a public key');
  return key;
}
