#pragma once

// The client SDK's local database: messages sent and received per
// conversation, the outbox of messages not yet SENT, the device id, the log
// cursor, and a small key/value store. Pure C++: no actors, no sockets.
//
// One interface, two backends (docs/ARCHITECTURE.md section 11):
// - open(dir): LMDB in `dir` (store/client_store.cpp). Durable.
// - open_memory(): everything in memory (store/client_store_memory.cpp), for
//   clients without a database: no files, no descriptors, lost with the
//   object. Holds at most memory_options::max_messages messages (see there).
// The doc comments below are the contract of both; where the memory backend
// differs (after an eviction), the comment says so.
//
// Thread-safety: reads from any thread, concurrently; writes from one thread
// at a time, which need not be the same thread each time (the SDK writes from
// the caller's thread for a send and from its actor otherwise). LMDB: each
// read in its own short read transaction, writers serialised by LMDB's writer
// lock. Memory: a std::shared_mutex, shared for reads and exclusive for
// writes, so concurrent writers are safe there too.
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

/// One member's status of a group message this device sent.
struct member_receipt {
  std::string member;
  uint8_t status = 0; ///< codec::message_status numbers (DELIVERED, READ).
  uint64_t ts_ms = 0;
};

/// A group message's progress: how many members it went to, and how many
/// of them have it delivered (or read) and read.
struct receipt_counts {
  uint32_t receivers = 0; ///< 0: unknown (the SENT answer did not say).
  uint32_t delivered = 0; ///< DELIVERED or READ.
  uint32_t read = 0;
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

/// Options of the memory backend (client_store::open_memory).
struct memory_options {
  /// Most messages held; 0 = unbounded. Beyond it, after each write, the
  /// oldest (lowest local id) messages in a FINAL state are evicted until
  /// the cap holds again. Final: a message set_status cannot reach (one
  /// received, or an outgoing copy sent by another device of this user);
  /// an outgoing message of this device (id == mid) whose status is a
  /// failure (bit 0x80), READ (0x03), DELIVERED (0x02) when its flags lack
  /// read_receipt (0x02), or SENT (0x01) when its flags have neither
  /// delivery_receipt (0x01) nor read_receipt (0x02). Messages in the outbox
  /// or waiting for a receipt are never evicted, so status updates always
  /// find them; they may hold the store above the cap.
  ///
  /// Eviction removes the message and its index entries (by seq, by
  /// (sender, mid), its conversation's page index); get() and read() no
  /// longer see it, and requeue() of an evicted failure is not_found. What
  /// stays right:
  /// - Dedup by seq: an incoming message whose seq is <= the highest seq of
  ///   any evicted incoming message counts as a duplicate (the server
  ///   delivers a user's log in seq order, so it is a redelivery).
  ///   Dedup by (sender, mid) is only as good as what is still held: a
  ///   real-time (seq 0) resend of an evicted message is stored again.
  /// - summary(): a conversation keeps its last message even when that
  ///   message was evicted (the entry keeps it), and the conversation stays
  ///   listed while all its messages are evicted.
  /// - Unread counts count the unread incoming messages HELD: evicting an
  ///   unread message decrements its conversation's count, so mark_read
  ///   (which can only mark held messages) brings it to 0. (Its READ receipt
  ///   is then never sent.)
  size_t max_messages = 100000;
  /// Most conversations kept listed after all their messages were evicted
  /// (summary() shows them with their last message); 0 = unbounded. Beyond
  /// it, the ones that emptied first are forgotten: summary() no longer
  /// lists them, as if they had never held a message. Conversations that
  /// hold a message are never forgotten. Without this bound a client that
  /// talks to many peers (a simulator's random pairs) keeps a conversation
  /// and a message for every peer it ever had, whatever max_messages says.
  size_t max_idle_conversations = 10000;
};

/// The local id of a message pulled by history sync: in time order with
/// the ids next_id() hands out (ms << 20 plus a counter that stays far
/// below 2^19 within a millisecond) and distinct from them, so a
/// conversation pages old and new messages by time; distinct for distinct
/// server seqs within one millisecond. It takes the upper half of the
/// millisecond BEFORE its stamp: history is older than what the device
/// holds, and messages often share a millisecond, so a synced message
/// sorts before the messages streamed live in its own millisecond (with
/// its own millisecond's upper half it sorted after them) and still after
/// those of every earlier one.
constexpr uint64_t history_id(uint64_t ts_ms, uint64_t seq) {
  return ((ts_ms == 0 ? 0 : ts_ms - 1) << 20) | (uint64_t{1} << 19) |
         (seq & ((uint64_t{1} << 19) - 1));
}

class client_store {
 public:
  /// Opens (or creates) the LMDB database in `dir`.
  static result<std::unique_ptr<client_store>>
  open(const std::string& dir, const env_options& opts = {});

  /// A new, empty database in memory: opens no file. Never fails.
  static std::unique_ptr<client_store>
  open_memory(const memory_options& opts = {});

  virtual ~client_store();

  client_store(const client_store&) = delete;
  client_store& operator=(const client_store&) = delete;

  /// The device id: made (random, 32 hex digits) and stored on first call.
  virtual result<std::string> device_id() = 0;

  /// A new local id: strictly increasing, never 0, persisted (a restart
  /// continues above every id handed out before). Time-based (ms << 20)
  /// plus a counter, so ids also grow across reinstalls.
  virtual result<uint64_t> next_id(uint64_t now_ms) = 0;

  // -- outgoing --------------------------------------------------------------

  /// Stores a new outgoing message (status OUTBOX) and queues it in the
  /// outbox. REQUIRES: m.outgoing, m.id == m.mid != 0.
  virtual status add_outgoing(const client_message& m) = 0;

  /// next_id(now_ms) and add_outgoing in one write transaction: sets
  /// `m.id = m.mid =` the next id (next_id's rules) and `m.status` to
  /// OUTBOX, stores the message and queues it in the outbox. Whatever
  /// m.id, m.mid and m.status held is ignored. REQUIRES: m.outgoing. On an
  /// error `m` is unchanged and no id is used up.
  virtual status add_new_outgoing(client_message& m, uint64_t now_ms) = 0;

  /// Messages waiting to be SENT, oldest first.
  virtual result<std::vector<client_message>> outbox() = 0;

  /// Sets the status of the outgoing message `mid`; a status other than
  /// OUTBOX takes it out of the outbox. A status never goes backwards
  /// (SENT after DELIVERED is ignored; failures replace OUTBOX and SENT).
  /// `seq` and `ts_ms` are stored when not 0. Returns the updated message,
  /// or not_found; `before`, when given, gets the status it had (so a
  /// caller knows whether the status changed without reading it first).
  virtual result<client_message> set_status(uint64_t mid, uint8_t status,
                                            uint64_t seq = 0,
                                            uint64_t ts_ms = 0,
                                            uint8_t* before = nullptr) = 0;

  /// Puts a failed (or still queued) outgoing message back into the outbox
  /// with status OUTBOX, for a resend: failures are final for set_status,
  /// a resend is the one way out. Errors: not_found; failed_precondition
  /// when it was SENT or beyond already.
  virtual result<client_message> requeue(uint64_t mid) = 0;

  // -- incoming
  // ------------------------------------------------------------------

  /// Stores a received message unless a message with the same `seq` (when
  /// not 0) or the same (sender, mid) is stored already. Assigns `m.id`
  /// as next_id(m.ts_ms) would (time-based on the server's time stamp, so
  /// history synced later sorts in between by time)
  /// (the stored copy's id for a duplicate; 0 for a duplicate of a message
  /// the memory backend evicted, see memory_options). Returns true when it
  /// was new. A caller may choose the id of a new message by setting
  /// `m.id` (history sync: older messages need ids below the newer ones,
  /// history_id()); already_exists when that id is taken. An outgoing
  /// copy from another device of this user never gets an id equal to its
  /// mid: `outgoing && id == mid` marks this device's own messages only.
  virtual result<bool> add_incoming(client_message& m) = 0;

  /// The highest server log seq stored (the SDK's ack position).
  virtual result<uint64_t> cursor() = 0;

  /// Raises the cursor to `seq` (never lowers it).
  virtual status set_cursor(uint64_t seq) = 0;

  // -- group receipts (per member, at the sender)
  // -------------------------------------------

  /// The number of members the group message `mid` went to (SENT said).
  virtual status set_receivers(uint64_t mid, uint32_t receivers) = 0;

  /// Records member `member`'s status of the group message `mid` (never
  /// backwards: READ stays READ) and returns the counts after it.
  virtual result<receipt_counts> member_status(uint64_t mid,
                                               const std::string& member,
                                               uint8_t status,
                                               uint64_t ts_ms) = 0;

  /// Every member's status of `mid` recorded so far, by member.
  virtual result<std::vector<member_receipt>> member_receipts(uint64_t mid) = 0;

  // -- changes (edits and retractions)
  // ------------------------------------------------------

  /// The local id of the message (sender, mid), 0 when none is held.
  virtual result<uint64_t> find(const std::string& sender, uint64_t mid) = 0;

  /// Changes a stored message: ORs `add_flags` into its flags and replaces
  /// its payload (an empty one for a retraction). Idempotent: `changed`
  /// (when given) tells whether anything was different. Returns the
  /// message as stored now, or not_found.
  virtual result<client_message> change(uint64_t id, uint16_t add_flags,
                                        const std::string& payload,
                                        bool* changed = nullptr) = 0;

  // -- reading
  // ---------------------------------------------------------------------

  /// One message by local id.
  virtual result<std::optional<client_message>> get(uint64_t id) = 0;

  /// The status of message `id` (nullopt when none is held): get() without
  /// the copy of the message, for callers that only look at its status.
  virtual result<std::optional<uint8_t>> status_of(uint64_t id) = 0;

  /// A page of the conversation with `peer` (or `group_id`): at most `count`
  /// messages strictly before (newest_first) or after (oldest_first) the
  /// message with local id `from_id`; `from_id` 0 starts at the end.
  virtual result<std::vector<client_message>>
  read(const std::string& peer, uint32_t group_id, uint64_t from_id,
       size_t count, read_order order) = 0;

  /// Every conversation with its last message and unread count, the most
  /// recent conversation first.
  virtual result<std::vector<conversation_summary>> summary() = 0;

  /// Marks incoming messages of the conversation read, up to local id
  /// `up_to` (0: all). Returns the highest server seq marked (for the READ
  /// receipt), 0 when none.
  virtual result<uint64_t> mark_read(const std::string& peer, uint32_t group_id,
                                     uint64_t up_to = 0) = 0;

  /// Deletes a message locally. Removing the last message a conversation
  /// holds removes the conversation.
  virtual status remove(uint64_t id) = 0;

  // -- key/value
  // ------------------------------------------------------------------

  /// Keys are 1 to 511 bytes (LMDB's key limit, on both backends).
  virtual status kv_put(const std::string& key, const std::string& value) = 0;
  virtual result<std::optional<std::string>> kv_get(const std::string& key) = 0;

 protected:
  client_store() = default;
};

} // namespace parley::store
