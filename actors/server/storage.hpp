#pragma once

// The storage actor: the only writer of the server's store. Requests that
// arrive while it works are gathered into one write transaction with one
// sync (group commit): a request is queued, and a flush message the actor
// sends itself runs after every request already in the mailbox.
//
// Protocol:
//   (append, append_request)  -> append_reply   after the batch is durable
//   (ack, uid, device, seq)   -> ()             cursor and DELIVERED receipts
//   (read, uid, peer, group, up_to) -> ()       READ receipts
//   (expire, uid, seqs)       -> ()             EXPIRED to their senders
//   (admin, type, body)       -> bytes          an admin frame, answered by
//                                               an encoded answer frame
//   (admin, type, body, slot) -> ()             the same, answered in slot
//   (change, uid, app, address, device, type, body)
//                             -> bytes          a user's group change, edit
//                                               or retraction, answered
//                                               group_info (create) or
//                                               reply, once durable
//   (flush)                   -> bool           commits what is queued
//   (flush, slot)             -> ()             the same, done in slot
//   (tick)                    -> ()             same, sent to itself
//   (sweep)                   -> ()             EXPIRED for messages whose
//                                               expiry passed undelivered;
//                                               it sends itself one a second
// After each commit it tells the dispatcher (log, uids) whose logs grew.

#include "actors/server/messages.hpp"

#include <caf/fwd.hpp>
#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>

#include <memory>

namespace parley::srv {

using storage_actor = caf::typed_actor<
  caf::replies_to<append_atom, append_request>::with<append_reply>,
  caf::reacts_to<ack_atom, uint64_t, std::string, uint64_t>,
  caf::reacts_to<read_atom, uint64_t, std::string, uint32_t, uint64_t>,
  caf::reacts_to<expire_atom, uint64_t, std::vector<uint64_t>>,
  caf::replies_to<admin_atom, uint8_t, bytes>::with<bytes>,
  caf::replies_to<change_atom, uint64_t, std::string, std::string,
                  std::string, uint8_t, bytes>::with<bytes>,
  caf::reacts_to<admin_atom, uint8_t, bytes, bytes_slot>,
  caf::replies_to<flush_atom>::with<bool>,
  caf::reacts_to<flush_atom, done_slot>, caf::reacts_to<tick_atom>,
  caf::reacts_to<sweep_atom>>;

struct context;

/// Spawns the storage actor (detached: it owns its OS thread, so LMDB write
/// transactions and fsync never block the scheduler's workers).
storage_actor make_storage_actor(caf::actor_system& sys,
                                 std::shared_ptr<context> ctx);

} // namespace parley::srv
