#pragma once

// The client SDK's local database on LMDB: messages sent and received per
// conversation, the outbox of messages not yet SENT, the device id, the log
// cursor, and a small key/value store. Pure C++: no actors, no sockets; the
// SDK's storage actor is its only writer.
//
// Thread-safety: as server_store: reads from any thread (each in its own
// short read transaction), writes from one thread at a time.
//
// Identities: an outgoing message is identified by its `mid` (the id the
// client gave it, unique per device). An incoming message gets a local `id`
// (assigned here, increasing); its server `seq` deduplicates it. Both share
// one id space: the outgoing message's id is its mid, and incoming ids are
// drawn from the same counter the SDK uses to make mids (see next_id()).

#include "store/lmdb.hpp"

#include <parley/status.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace parley::store {

/// On-disk format of the client store.
constexpr uint32_t client_format_version = 1;

/// A message as the local database keeps it.
struct client_message {
  uint64_t id = 0;       ///< Local id: the mid of an outgoing message.
  uint64_t mid = 0;      ///< The sender's message id.
  uint64_t seq = 0;      ///< Server log seq of this copy; 0 when unknown.
  std::string peer;      ///< The other user of a 1:1 conversation.
  uint32_t group_id = 0; ///< The group, 0 for 1:1.
  std::string sender;    ///< Who sent it (this user for outgoing).
  bool outgoing = false;
  uint16_t kind = 0;
  uint16_t flags = 0;
  uint32_t expiry_s = 0;
  uint64_t in_reply_to = 0;
  uint64_t ts_ms = 0; ///< Server time (local time while in the outbox).
  uint8_t status = 0; ///< codec::message_status numbers.
  bool read = false;  ///< Incoming: the user read it.
  std::string payload;
};

/// The last message of a conversation and its unread count.
struct conversation_summary {
  std::string peer;
  uint32_t group_id = 0;
  client_message last;
  uint64_t unread = 0;
};

/// Which end of a conversation a page starts from.
enum class read_order { newest_first, oldest_first };

class client_store {
 public:
  /// Opens (or creates) the database in `dir`.
  static result<std::unique_ptr<client_store>>
  open(const std::string& dir, const env_options& opts = {});

  ~client_store();

  /// The device id: made (random, 32 hex digits) and stored on first call.
  result<std::string> device_id();

  /// A new local id: strictly increasing, never 0, persisted (a restart
  /// continues above every id handed out before). Time-based (ms << 20)
  /// plus a counter, so ids also grow across reinstalls.
  result<uint64_t> next_id(uint64_t now_ms);

  // -- outgoing --------------------------------------------------------------

  /// Stores a new outgoing message (status OUTBOX) and queues it in the
  /// outbox. REQUIRES: m.outgoing, m.id == m.mid != 0.
  status add_outgoing(const client_message& m);

  /// Messages waiting to be SENT, oldest first.
  result<std::vector<client_message>> outbox();

  /// Sets the status of the outgoing message `mid`; a status other than
  /// OUTBOX takes it out of the outbox. A status never goes backwards
  /// (SENT after DELIVERED is ignored; failures replace OUTBOX and SENT).
  /// `seq` and `ts_ms` are stored when not 0. Returns the updated message,
  /// or not_found.
  result<client_message> set_status(uint64_t mid, uint8_t status,
                                    uint64_t seq = 0, uint64_t ts_ms = 0);

  /// Puts a failed (or still queued) outgoing message back into the outbox
  /// with status OUTBOX, for a resend: failures are final for set_status,
  /// a resend is the one way out. Errors: not_found; failed_precondition
  /// when it was SENT or beyond already.
  result<client_message> requeue(uint64_t mid);

  // -- incoming
  // ------------------------------------------------------------------

  /// Stores a received message unless a message with the same `seq` (when
  /// not 0) or the same (sender, mid) is stored already. Assigns `m.id`.
  /// Returns true when it was new.
  result<bool> add_incoming(client_message& m);

  /// The highest server log seq stored (the SDK's ack position).
  result<uint64_t> cursor();

  /// Raises the cursor to `seq` (never lowers it).
  status set_cursor(uint64_t seq);

  // -- reading
  // ---------------------------------------------------------------------

  /// One message by local id.
  result<std::optional<client_message>> get(uint64_t id);

  /// A page of the conversation with `peer` (or `group_id`): at most `count`
  /// messages strictly before (newest_first) or after (oldest_first) the
  /// message with local id `from_id`; `from_id` 0 starts at the end.
  result<std::vector<client_message>> read(const std::string& peer,
                                           uint32_t group_id, uint64_t from_id,
                                           size_t count, read_order order);

  /// Every conversation with its last message and unread count, the most
  /// recent conversation first.
  result<std::vector<conversation_summary>> summary();

  /// Marks incoming messages of the conversation read, up to local id
  /// `up_to` (0: all). Returns the highest server seq marked (for the READ
  /// receipt), 0 when none.
  result<uint64_t> mark_read(const std::string& peer, uint32_t group_id,
                             uint64_t up_to = 0);

  /// Deletes a message locally.
  status remove(uint64_t id);

  // -- key/value
  // ------------------------------------------------------------------

  status kv_put(const std::string& key, const std::string& value);
  result<std::optional<std::string>> kv_get(const std::string& key);

  struct impl;

 private:
  explicit client_store(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

} // namespace parley::store
