#pragma once

// One session actor per accepted connection (scheduled on the worker pool):
// TLS (memory BIOs), framing, decoding, login, and the device's delivery
// state (log cursor, window, acks). Its connection broker only moves bytes,
// because CAF 0.17 runs every broker on the one multiplexer thread.
//
// Protocol (from its connection):
//   (data, ciphertext)   bytes read from the socket
//   (written, n)         n bytes left the connection's write buffer
//   (closed)             the socket closed
// (from the dispatcher):
//   (log)                the user's log grew: stream what is new
//   (realtime, frame)    an unstored frame (expiry 0, presence, calls)
//   (kick, reason, text) end the session with goodbye(reason)
//   (shutdown)           the server stops: goodbye(SHUTDOWN)
// It answers its connection with (data, ciphertext), (consumed, n) -- read
// credit for n bytes processed -- and (close).

#include <caf/actor.hpp>
#include <caf/fwd.hpp>

#include <memory>

namespace parley::srv {

struct context;

/// Spawns the session of one connection.
caf::actor make_session_actor(caf::actor_system& sys, caf::actor connection,
                              std::shared_ptr<context> ctx,
                              std::string peer_addr);

} // namespace parley::srv
