import { Agent, type Dispatcher } from 'undici';
import { BrokerClient, type BrokerClientOptions } from '../../client/src/broker-client.js';
import { TEST_KEY, type TestBroker } from './harness.js';

/** An undici Agent that records every request the client sends: proof of "no HTTP request". */
export class RecordingAgent extends Agent {
  readonly requests: string[] = [];
  override dispatch(options: Agent.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    this.requests.push(`${options.method} ${options.path}`);
    return super.dispatch(options, handler);
  }
}

/**
 * Clients of test brokers that record their requests. `clientOf` pushes the client's (and its agent's) close
 * onto `cleanups`, which the test file runs after each test.
 */
export function clientFactory(cleanups: Array<() => Promise<void>>) {
  return (b: TestBroker, options: Partial<BrokerClientOptions> = {}): { client: BrokerClient; agent: RecordingAgent } => {
    const agent = new RecordingAgent();
    const client = new BrokerClient({ baseUrl: b.url, apiKey: TEST_KEY, dispatcher: agent, ...options });
    cleanups.push(async () => {
      await client.close();
      await agent.close();
    });
    return { client, agent };
  };
}
