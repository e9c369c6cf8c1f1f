/** A tenant id in an address (the API's rule); anything else is answered 404 without an API call. */
export const TENANT_PATTERN = '^[a-z][a-z0-9-]{2,62}$';
export const TENANT_PARAM = { type: 'object', properties: { tenant: { type: 'string', pattern: TENANT_PATTERN } }, required: ['tenant'] } as const;

/** A token in an address or a form: a compact JWS (the API decides whether it is one of the tenant's). */
export const TOKEN_PATTERN = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;
export const TOKEN_PARAMS = {
  type: 'object',
  properties: { tenant: TENANT_PARAM.properties.tenant, token: { type: 'string', maxLength: 4096 } },
  required: ['tenant', 'token'],
} as const;
