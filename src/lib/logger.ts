import { pino, type Logger, type DestinationStream } from 'pino';

export type { Logger };

/** Paths that may hold a secret anywhere in a log object; pino replaces them before serialising. */
export const REDACT_PATHS = [
  'appSecret',
  '*.appSecret',
  'token',
  '*.token',
  'channelToken',
  '*.channelToken',
  'rejectedToken',
  '*.rejectedToken',
  'mediaChannelKey',
  '*.mediaChannelKey',
  'url',
  'sign',
  '*.sign',
  'key',
  '*.key',
  'authorization',
  'req.headers.authorization',
  'req.headers.cookie',
  'headers.authorization',
  // ioredis errors carry the command's arguments: AUTH's password, a token passed to a Lua script.
  'command.args',
  '*.command.args',
  'err.cause.command.args',
  'password',
  '*.password',
];

/** The broker's root logger: JSON lines on stdout (or the given stream), secrets redacted. */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'polyv-token-broker' },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination,
  );
}
