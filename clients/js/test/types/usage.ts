// Type-checked by test/client/types.test.js (tsc --noEmit --strict), never run.
// Exercises the whole public API as an application would, the ZIM snippets
// included; each @ts-expect-error line must stay an error.
import RoomdClientDefault, {
  create,
  ErrorCode,
  RoomdClient,
  RoomdError,
  type ConnectionStateChangedEvent,
  type RoomMessage,
  type RoomStateChangedEvent,
  type TokenProvider,
  type TokenWillExpireEvent,
} from '../../roomd.js';

declare const roomID: string;

const zim: RoomdClient = create('ws://127.0.0.1:8080/v1/ws', {
  WebSocket: globalThis.WebSocket,
  reconnect: { enabled: true, initialDelayMs: 100, maxDelayMs: 5000, maxAttempts: 10, jitter: 0.3 },
  requestTimeoutMs: 5000,
  heartbeatIntervalMs: 0,
  logger: console,
  tokenProvider: async ({ userID, secondsLeft }) => `token for ${userID}, ${secondsLeft} s left`,
});
const syncProvider: TokenProvider = ({ userID }) => userID;
create('ws://127.0.0.1:8080/v1/ws', { tokenProvider: syncProvider });
const same: RoomdClient = new RoomdClientDefault('ws://127.0.0.1:8080/v1/ws');
const plain = new RoomdClient('ws://127.0.0.1:8080/v1/ws', {});

// The ZIM snippets, as the README shows them.
zim.createRoom({ roomID: '', roomName: '' }).then(function ({ roomInfo }) { /* ok */ }).catch(function (err) { /* failed */ });
zim.joinRoom(roomID).then(function ({ roomInfo }) {});
zim.enterRoom({ roomID: '', roomName: '' }).then(function ({ roomInfo }) {});
zim.leaveRoom(roomID).then(function ({ roomID }) {});
zim.on('roomMemberJoined', function (zim, { roomID, memberList }) { console.log(roomID, memberList); });
zim.on('roomMemberLeft', function (zim, { roomID, memberList }) { console.log(roomID, memberList); });

zim.on('roomMessageReceived', (client, { roomID, messageList }) => {
  const first: RoomMessage | undefined = messageList[0];
  const seq: number | undefined = first?.seq;
  const id: string | undefined = first?.messageID;
  console.log(client.state, roomID, seq, id);
});
zim.on('roomStateChanged', (_, { roomID, state, event, extendedData }: RoomStateChangedEvent) => {
  if (state === 'disconnected' && event === 'serverShutdown') console.log(roomID, extendedData.closeCode);
});
const onConnection = (_: RoomdClient, { state, event, extendedData }: ConnectionStateChangedEvent) => {
  if (state === 'reconnecting') console.log(event, extendedData.closeCode, extendedData.closeReason);
  if (event === 'reconnectFailed') console.log(extendedData.attempts);
};
zim.on('connectionStateChanged', onConnection);
zim.off('connectionStateChanged', onConnection);
zim.off('roomMessageReceived');

// ZIM's token renewal, as the README shows it.
declare function fetchTokenFromBackend(userID: string): Promise<string>;
zim.on('tokenWillExpire', (zim, { second }) => {
  console.log(`the token expires in ${second} s`);
  fetchTokenFromBackend(zim.userInfo!.userID)
    .then((token) => zim.renewToken(token))
    .then(({ token }) => console.log('renewed', token.length))
    .catch((err) => console.error(err));
});
const onExpiry = (_: RoomdClient, data: TokenWillExpireEvent) => console.log(data.second);
zim.off('tokenWillExpire', onExpiry);

async function session(): Promise<void> {
  const { userInfo } = await zim.login({ userID: 'u1', userName: 'Ann' }, 'token');
  const name: string = userInfo.userName;
  await zim.login({ userID: 'u1' });
  await zim.renewToken('next-token');
  const { roomInfo, firstSeq } = await zim.createRoom({ roomID: 'r1' }, { roomDestroyDelayTime: 60, roomAttributes: { topic: 'x' } });
  await zim.queryHistoryMessage('r1', { afterSeq: firstSeq - 1 });
  const renewed: string = (await zim.renewToken('next')).token;
  const roomName: string = roomInfo.roomName;
  await zim.enterRoom({ roomID: 'r2', roomName: 'Two' }, { roomDestroyDelayTime: 0 });
  const { message } = await zim.sendRoomMessage({ type: 'text', message: 'hi', extendedData: '{}' }, 'r1', { priority: 'high', clientMessageID: 'c1' });
  await zim.sendRoomMessage({ type: 1, message: 'ZIM style' }, 'r1', { priority: 3 });
  const history = await zim.queryHistoryMessage('r1', { beforeSeq: message.seq, count: 50 });
  const more: boolean = history.hasMore;
  await zim.queryHistoryMessage('r1');
  const page = await zim.queryRoomMemberList('r1', { nextFlag: '', count: 10 });
  const next: string = page.nextFlag;
  const { count } = await zim.queryRoomOnlineMemberCount('r1');
  const { roomIDs } = await zim.leaveAllRoom();
  await zim.logout();
  const dropped: boolean = zim._debugDropConnection();
  console.log(renewed, name, roomName, more, next, count + 1, roomIDs.join(), dropped, same.userInfo?.userID, plain.state);

  try {
    await zim.joinRoom('missing');
  } catch (error) {
    if (error instanceof RoomdError) {
      const code: number = error.code;
      const reason: string = error.reason;
      const wait: number | undefined = error.retryAfterMs;
      if (code === ErrorCode.RoomNotFound || code === ErrorCode.ConnectionLost || code === ErrorCode.NotConnected || code === ErrorCode.RequestTimeout) {
        console.log(reason, wait);
      }
    }
  }

  // @ts-expect-error no such event
  zim.on('roomMemberJoin', () => {});
  // @ts-expect-error the data of roomMemberJoined has no messageList
  zim.on('roomMemberJoined', (_, { messageList }) => console.log(messageList));
  // @ts-expect-error not a message type
  await zim.sendRoomMessage({ type: 'video', message: 'x' }, 'r1');
  // @ts-expect-error roomID is required
  await zim.enterRoom({ roomName: 'x' });
  // @ts-expect-error the tokenWillExpire data is { second }, not ZIM-unlike names
  zim.on('tokenWillExpire', (_, { secondsLeft }) => console.log(secondsLeft));
  // @ts-expect-error a tokenProvider returns a token
  create('ws://x', { tokenProvider: async () => 42 });
  // @ts-expect-error the state is read-only
  zim.state = 'connected';
  // @ts-expect-error codes are constants
  ErrorCode.RoomNotFound = 1;
}
void session();
