// The Socket.IO 4.8 peer of roomd's fan-out benchmark: a client emits
// "join" with a room name, then every "msg" it emits goes to the other
// members of its room. No persistence, no validation: a generous peer.
//
//   npm install && PORT=9002 node server.js
import { createServer } from "node:http";
import { Server } from "socket.io";

const port = Number(process.env.PORT ?? 9002);
const http = createServer();
const io = new Server(http, { transports: ["websocket"], perMessageDeflate: false });

io.on("connection", (socket) => {
  let room = null;
  socket.on("join", (name) => {
    room = name;
    socket.join(name);
  });
  socket.on("msg", (body) => {
    if (room) socket.to(room).emit("msg", body);
  });
});

http.listen(port, "127.0.0.1", () => console.error(`socket.io peer on 127.0.0.1:${port}`));
