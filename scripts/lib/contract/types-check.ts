// Compiled by scripts/test.d/40-contract (tsc --noEmit --strict): web/herald-client.d.ts, whose
// server shapes come from the generated web/herald-api.d.ts, used as an application would.
import type { Frame, HeraldClient, Notification, Counts } from '../../../web/herald-client.js';
import type { components, operations } from '../../../web/herald-api.js';

declare const client: HeraldClient;

client.on('notification', (n: Notification) => {
  const title: string = n.title;
  const when: string = n.createdAt;
  void [title, when];
});
client.on('counts', (c: Counts) => {
  const unread: number = c.unread + c.byType['comment.reply']!;
  void unread;
});

export function describe(frame: Frame): string {
  switch (frame.type) {
    case 'notification.created':
      return frame.notification?.title ?? frame.id;
    case 'sync.result':
      return `${frame.changes.length} changes up to ${frame.upTo}`;
    case 'error':
      return `${frame.code}: ${frame.message}`;
    default:
      return frame.type;
  }
}

const refused: Frame = { type: 'error', code: 'unauthorized', message: 'reconnect' };
const create: components['schemas']['CreateNotificationRequest'] = {
  userId: 'alice',
  type: 'comment.reply',
  title: 'Hello',
  body: '',
  priority: 'high',
};
type Listed = operations['listNotifications']['responses'][200]['content']['application/json'];
const page: Listed = { items: [], nextCursor: null };
void [refused, create, page];
