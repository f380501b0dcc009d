import type { z } from "zod";

/*
 * Request and response types of a route, read from the zod schema object the service declares the
 * route with (each app's `src/api.ts` exports them). Only types cross over (`import type`): the SDK
 * has no run-time dependency on the services, and a schema change there breaks this package's
 * typecheck instead of its users.
 */

/** What a body, query or params schema accepts (before defaults and transforms). */
export type BodyOf<S> = S extends { body: infer B extends z.ZodType } ? z.input<B> : never;
export type QueryOf<S> = S extends { querystring: infer Q extends z.ZodType } ? z.input<Q> : never;
export type ParamsOf<S> = S extends { params: infer P extends z.ZodType } ? z.input<P> : never;

/** What the service answers with status C (what its serializer emits: the schema's output). */
export type ReplyOf<S, C extends number = 200> = S extends { response: infer R }
  ? C extends keyof R
    ? R[C] extends z.ZodType
      ? z.output<R[C]>
      : never
    : never
  : never;
