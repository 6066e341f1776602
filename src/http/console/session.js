// The signed-in key, kept for this tab only (sessionStorage), and what its claims say.

const STORAGE_KEY = 'pgstorage.console.key';

export function savedKey() {
  return sessionStorage.getItem(STORAGE_KEY);
}

export function remember(key) {
  sessionStorage.setItem(STORAGE_KEY, key);
}

export function forget() {
  sessionStorage.removeItem(STORAGE_KEY);
}

/**
 * The token's claims, read without verifying them (the server verifies; this only labels the
 * session). Throws when the text is not a JWT.
 */
export function claimsOf(key) {
  if (!key) return { role: 'anon' };
  const parts = key.split('.');
  if (parts.length !== 3) throw new Error('this is not a JWT (it should have three parts separated by dots)');
  const base64 = parts[1].replace(/-/g, '+').replace(/_/g, '/');
  const padded = base64 + '='.repeat((4 - (base64.length % 4)) % 4);
  const bytes = Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
  const claims = JSON.parse(new TextDecoder().decode(bytes));
  if (typeof claims !== 'object' || claims === null) throw new Error('the JWT has no claims object');
  return claims;
}

export function describe(claims) {
  const role = claims.role ?? 'anon';
  return claims.sub ? `${role} (${claims.sub})` : role;
}
