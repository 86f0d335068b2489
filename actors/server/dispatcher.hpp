#pragma once

// The dispatcher knows which devices of which users are online and routes
// notifications to their sessions.
//
// Protocol:
//   (register, uid, device, session)   -> ()   a second session of the same
//                                              device replaces the first,
//                                              which gets (kick, SIGNOUT)
//   (unregister, uid, device, session) -> ()
//   (log, uids, heads, records)        -> ()   tells their sessions
//                                              (log, head, records)
//   (realtime, uid, frame)             -> uint32_t  devices reached
//   (realtime, uids, frame)            -> ()   the same, to several users
//                                              (presence; never stored)
//   (subscribe, on, uids, addresses, session) -> ()  the session watches
//                                              (or stops watching) whether
//                                              these users are online: it
//                                              gets their presence (online
//                                              or offline) now and at each
//                                              change; dropped when it ends
//   (kick, uid, reason, text)          -> ()   ends the user's sessions
//   (count)                            -> uint64_t  online sessions

#include "actors/server/messages.hpp"

#include <caf/actor.hpp>
#include <caf/fwd.hpp>
#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>

#include <memory>

namespace parley::srv {

using dispatcher_actor = caf::typed_actor<
  caf::reacts_to<register_atom, uint64_t, std::string, caf::actor>,
  caf::reacts_to<unregister_atom, uint64_t, std::string, caf::actor>,
  caf::reacts_to<log_atom, std::vector<uint64_t>, std::vector<uint64_t>,
                 std::vector<record_batch>>,
  caf::replies_to<realtime_atom, uint64_t, bytes>::with<uint32_t>,
  caf::reacts_to<realtime_atom, std::vector<uint64_t>, bytes>,
  caf::reacts_to<subscribe_atom, bool, std::vector<uint64_t>,
                 std::vector<std::string>, caf::actor>,
  caf::reacts_to<kick_atom, uint64_t, uint8_t, std::string>,
  caf::replies_to<count_atom>::with<uint64_t>,
  caf::reacts_to<count_atom, count_slot>>;

struct context;

/// Spawns the dispatcher.
dispatcher_actor make_dispatcher_actor(caf::actor_system& sys,
                                       std::shared_ptr<context> ctx);

} // namespace parley::srv
