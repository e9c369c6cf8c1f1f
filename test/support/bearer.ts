import { InterceptingCall, Interceptor } from '@grpc/grpc-js';

/** A client interceptor that sends `token` as the bearer token of every call. */
export function bearer(token: string): Interceptor {
  return (options, next) =>
    new InterceptingCall(next(options), {
      start(metadata, listener, start) {
        metadata.set('authorization', `Bearer ${token}`);
        start(metadata, listener);
      },
    });
}

/** Client options for a generated client that calls as the holder of `token`. */
export function asBearer(token: string): { interceptors: Interceptor[] } {
  return { interceptors: [bearer(token)] };
}
