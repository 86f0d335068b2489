#pragma once

// One session actor per accepted connection (scheduled on the worker pool):
// it owns the socket (a net::channel: it reads and writes it itself when
// the poller says it may), TLS (memory BIOs), framing, decoding, login, and
// the device's delivery state (log cursor, window, acks).
//
// Protocol:
//   (io)                 the poller saw the socket readable/writable
//   (resume), (flush)    to itself: read on, write what is queued
// (from the dispatcher):
//   (log), (log, head)   the user's log grew (to head): stream what is new
//   (realtime, frame)    an unstored frame (expiry 0, presence, calls)
//   (kick, reason, text) end the session with goodbye(reason)
// (from the acceptor):
//   (shutdown)           the server stops: goodbye(SHUTDOWN)

#include <caf/actor.hpp>
#include <caf/fwd.hpp>

#include <memory>

namespace parley::srv {

struct context;

/// Spawns the session of one connection.
/// Spawns the session of the accepted socket `fd` (it owns it from now).
caf::actor make_session_actor(caf::actor_system& sys, int fd,
                              std::shared_ptr<context> ctx);

} // namespace parley::srv
