import { z } from 'zod';

/** PolyV's response envelope; `code` 200 with status success is the only success. */
export const envelopeSchema = z.object({
  code: z.number(),
  status: z.string().nullish(),
  message: z.string().nullish(),
  data: z.unknown(),
});

export const channelTokenDataSchema = z.object({
  channelToken: z.string().min(1).max(4096),
  expireTime: z.number().int().positive(),
});

export const watchApiTokenDataSchema = z.object({ token: z.string().min(1).max(4096) });

export const commonTokenDataSchema = z.object({
  token: z.string().min(1).max(4096),
  mediaChannelKey: z.string().min(1).max(16_384),
});

export const watchUrlDataSchema = z.url();

export type Envelope = z.infer<typeof envelopeSchema>;
export type ChannelTokenData = z.infer<typeof channelTokenDataSchema>;
export type WatchApiTokenData = z.infer<typeof watchApiTokenDataSchema>;
export type CommonTokenData = z.infer<typeof commonTokenDataSchema>;
