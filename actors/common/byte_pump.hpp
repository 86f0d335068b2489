#pragma once

// The broker half of a connection, shared by server and client: it runs on
// CAF's multiplexer thread and only moves bytes between a socket and the
// actor that owns the connection (TLS, framing and logic live there).
//
// Protocol with the owner:
//   -> owner (data, bytes)      bytes read from the socket
//   -> owner (written, n)       n bytes left the write buffer
//   -> owner (closed)           the socket closed
//   <- owner (data, bytes)      write these bytes
//   <- owner (consumed, n)      read credit: n bytes were processed; past
//                               max_unconsumed the pump stops reading
//   <- owner (close)            flush, then close the socket
//   <- owner (shutdown)         forwarded to the owner (server shutdown)
// The pump monitors its owner and closes the socket when the owner dies.

#include <caf/fwd.hpp>
#include <caf/io/fwd.hpp>

#include <cstdint>

namespace parley::net {

/// Bytes forwarded and not yet processed before the pump stops reading.
constexpr uint64_t max_unconsumed = 256 * 1024;

/// The behaviour of a broker pumping bytes of `hdl` to and from `owner`.
caf::behavior byte_pump(caf::io::broker* self, caf::io::connection_handle hdl,
                        caf::actor owner);

/// Spawns a broker that adopts the connected socket `fd` and pumps it for
/// `owner`.
caf::actor spawn_pump(caf::actor_system& sys, int fd, caf::actor owner);

} // namespace parley::net
