/** Encrypts and authenticates page tokens under a tenant key (KeyManager.pageTokenSealer makes them). */
export interface TokenSealer {
  seal(plaintext: string): string;
  /** The plaintext, or null if the token was not sealed by this sealer. */
  open(token: string): string | null;
}
