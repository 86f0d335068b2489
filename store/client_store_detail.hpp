#pragma once

// Private to store/: what both client_store backends share (argument checks,
// status rules, ids). Defined in store/client_store.cpp.

#include "store/client_store.hpp"

#include <cstdint>
#include <limits>
#include <string>
#include <string_view>

namespace parley::store::detail {

// Status numbers (codec::message_status) the store needs; store/ does not
// depend on the codec's headers.
constexpr uint8_t status_outbox = 0x00;
constexpr uint8_t status_sent = 0x01;
constexpr uint8_t status_delivered = 0x02;
constexpr uint8_t status_read = 0x03;
constexpr uint8_t status_received_new = 0x12;
constexpr uint8_t status_received_read = 0x13;
constexpr uint8_t status_failure_bit = 0x80;

// Message flags (codec's message flags) that ask for receipts.
constexpr uint16_t flag_delivery_receipt = 0x01;
constexpr uint16_t flag_read_receipt = 0x02;

/// Longest peer or sender name: its length is one byte in LMDB's keys and
/// values, and both backends accept the same messages.
constexpr size_t max_name = 255;

/// Longest key/value key on both backends (LMDB's default key limit).
constexpr size_t max_kv_key = 511;

/// "0x" and the hex digits of `v`, for messages.
std::string hex_id(uint64_t v);

/// 16 random bytes as 32 hex digits; empty when the generator fails.
std::string random_hex16();

/// invalid_argument unless (peer, group_id) names one conversation.
status check_conversation(const char* what, std::string_view peer,
                          uint32_t group_id);

/// The checks add_outgoing and add_new_outgoing share (outgoing, the
/// conversation, the sender's length); not the id.
status check_new_outgoing(const char* what, const client_message& m);

/// add_outgoing's id rule: id == mid != 0, with the ids in the message.
status check_outgoing_ids(const client_message& m);

/// The checks of add_incoming.
status check_incoming(const client_message& m);

/// invalid_argument unless `s` is a status of an outgoing message.
status check_outgoing_status(uint8_t s);

/// True when a stored status `cur` of an outgoing message gives way to
/// `next`: OUTBOX < SENT < DELIVERED < READ; a failure (>= 0x80) replaces
/// OUTBOX and SENT only, and is final.
bool status_advances(uint8_t cur, uint8_t next);

/// True when an incoming message counts as unread.
inline bool is_unread(const client_message& m) {
  return !m.outgoing && !m.read;
}

/// next_id's candidate for `now_ms`: ms << 20, saturating instead of
/// wrapping for clocks past year 2527.
inline uint64_t id_candidate(uint64_t now_ms) {
  return now_ms >= (uint64_t{1} << 44) ? std::numeric_limits<uint64_t>::max()
                                       : now_ms << 20;
}

/// resource_exhausted: every local id was handed out (`last` is the max).
status ids_used_up(const std::string& where, uint64_t last);

} // namespace parley::store::detail
