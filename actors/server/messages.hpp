#pragma once

// Atoms and message types exchanged by the server's actors. Everything that
// crosses an actor boundary is a plain struct with an inspect() overload, so
// a forgotten registration shows up in the round-trip test
// (tests/actors/messages_test.cpp, built into e2e_tests), not across a network
// link later.

#include "store/server_store.hpp"

#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/atom.hpp>
#include <caf/meta/type_name.hpp>

#include <cstdint>
#include <future>
#include <memory>
#include <string>
#include <vector>

namespace parley::srv {

/// Raw bytes: ciphertext between connection and session, encoded frames.
using bytes = std::vector<uint8_t>;

// Answers for callers outside the actor system (parley::server's in-process
// admin calls and stop, on the application's threads): the actor sets the
// promise, the caller waits on its future. A scoped_actor's request would
// work too, but ThreadSanitizer cannot see the handoff through CAF's
// uninstrumented mailbox, while a std::promise it sees.
using bytes_slot = std::shared_ptr<std::promise<bytes>>;
using count_slot = std::shared_ptr<std::promise<uint64_t>>;
using done_slot = std::shared_ptr<std::promise<void>>;

// -- atoms (at most 10 characters)
// -------------------------------------------------

using data_atom = caf::atom_constant<caf::atom("data")>;
using written_atom = caf::atom_constant<caf::atom("written")>;
using close_atom = caf::atom_constant<caf::atom("close")>;
using closed_atom = caf::atom_constant<caf::atom("closed")>;
using append_atom = caf::atom_constant<caf::atom("append")>;
using ack_atom = caf::atom_constant<caf::atom("ack")>;
using read_atom = caf::atom_constant<caf::atom("read")>;
using admin_atom = caf::atom_constant<caf::atom("admin")>;
using change_atom = caf::atom_constant<caf::atom("change")>;
using flush_atom = caf::atom_constant<caf::atom("flush")>;
using register_atom = caf::atom_constant<caf::atom("register")>;
using unregister_atom = caf::atom_constant<caf::atom("unregist")>;
using log_atom = caf::atom_constant<caf::atom("log")>;
using realtime_atom = caf::atom_constant<caf::atom("realtime")>;
using kick_atom = caf::atom_constant<caf::atom("kick")>;
using count_atom = caf::atom_constant<caf::atom("count")>;
using tick_atom = caf::atom_constant<caf::atom("tick")>;
using shutdown_atom = caf::atom_constant<caf::atom("shutdown")>;
using expire_atom = caf::atom_constant<caf::atom("expire")>;
using sweep_atom = caf::atom_constant<caf::atom("sweep")>;
using consumed_atom = caf::atom_constant<caf::atom("consumed")>;
using io_atom = caf::atom_constant<caf::atom("io")>;
using resume_atom = caf::atom_constant<caf::atom("resume")>;
using presence_atom = caf::atom_constant<caf::atom("presence")>;
using subscribe_atom = caf::atom_constant<caf::atom("subscribe")>;

// -- storage requests
// ----------------------------------------------------------------

/// A session asks the storage actor to append a 1:1 message.
struct append_request {
  uint64_t sender_uid = 0;
  std::string app_id;
  std::string sender;
  std::string device;
  bytes send_body; ///< Body of the codec::send frame, as received.
};

template<class Inspector>
typename Inspector::result_type inspect(Inspector& f, append_request& x) {
  return f(caf::meta::type_name("append_request"), x.sender_uid, x.app_id,
           x.sender, x.device, x.send_body);
}

/// The records one batch appended to one user's log, in seq order:
/// handed to that user's sessions with the news, so that a session whose
/// stream is at the first of them sends them without reading the store.
/// `rewrites` is context::rewrites when the batch was made: copies taken
/// before an edit or retraction rewrote stored records are not streamed.
struct appended_batch {
  uint64_t rewrites = 0;
  std::vector<store::log_record> records;
};

/// Shared and immutable (several devices, one copy); local only.
using record_batch = std::shared_ptr<const appended_batch>;

/// What became of an append (store::append_outcome, flattened).
struct append_reply {
  uint8_t status = 0; ///< codec::message_status
  std::string text;
  bool duplicate = false;
  uint64_t sender_seq = 0;
  uint64_t receiver_uid = 0;
  uint64_t receiver_seq = 0;
  uint64_t ts_ms = 0;
  uint32_t receivers = 0; ///< A group message: the members it went to.
  /// What the batch appended to the sender's log (local only: not
  /// serialized, so a copy that crossed a network would stream from the
  /// store instead).
  record_batch records;
};

template<class Inspector>
typename Inspector::result_type inspect(Inspector& f, append_reply& x) {
  return f(caf::meta::type_name("append_reply"), x.status, x.text, x.duplicate,
           x.sender_seq, x.receiver_uid, x.receiver_seq, x.ts_ms, x.receivers);
}

} // namespace parley::srv

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(parley::srv::bytes_slot)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(parley::srv::record_batch)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::vector<parley::srv::record_batch>)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(parley::srv::count_slot)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(parley::srv::done_slot)
