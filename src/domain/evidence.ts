import { isIPv4, isIPv6 } from 'node:net';
import ipaddr from 'ipaddr.js';
import { Evidence } from './model';
import { FieldViolation } from '../shared/errors';
import { characterCount } from '../shared/text';

const MAX_TEXT = 4096;
const MAX_SHORT = 2048;

/**
 * Checks evidence sizes and truncates the source IP as the brief requires (IPv4 to /24, IPv6
 * to /48): enough to show where consent came from, not enough to single out a device.
 */
export function prepareEvidence(evidence: Evidence, field: string, violations: FieldViolation[]): Evidence {
  const out: Evidence = {};
  const text = (name: keyof Evidence, wire: string, max: number) => {
    const value = evidence[name];
    if (value === undefined || value === '') return;
    if (Buffer.byteLength(value, 'utf8') > max) {
      violations.push({ field: `${field}.${wire}`, reason: 'TOO_LONG', description: `must be at most ${max} bytes` });
      return;
    }
    out[name] = value;
  };
  if (evidence.sourceIp) {
    const truncated = truncateIp(evidence.sourceIp);
    if (truncated === null) {
      violations.push({ field: `${field}.source_ip`, reason: 'INVALID_IP_ADDRESS', description: 'is not an IPv4 or IPv6 address' });
    } else {
      out.sourceIp = truncated;
    }
  }
  text('userAgent', 'user_agent', MAX_SHORT);
  text('pageUrl', 'page_url', MAX_SHORT);
  text('inboundMessageId', 'inbound_message_id', 256);
  text('freeText', 'free_text', MAX_TEXT);
  if (evidence.collectedBy !== undefined && evidence.collectedBy !== '') {
    // A top-level request field, not part of the evidence message.
    if (characterCount(evidence.collectedBy) > 200) {
      violations.push({ field: 'collected_by', reason: 'TOO_LONG', description: 'must be at most 200 characters' });
    } else {
      out.collectedBy = evidence.collectedBy;
    }
  }
  return out;
}

/** "203.0.113.77" -> "203.0.113.0"; "2001:db8:1:2::1" -> "2001:db8:1::"; null when not an address. */
export function truncateIp(raw: string): string | null {
  const value = raw.trim();
  // The usual case first, without parsing into objects: node:net accepts only four decimal parts
  // of 0-255 without leading zeros, so the /24 network is the first three parts as written.
  if (isIPv4(value)) return `${value.slice(0, value.lastIndexOf('.'))}.0`;
  // Only the canonical forms: ipaddr.js also reads "127.1", "0x7f.0.0.1" and bare integers as
  // IPv4, which no client reports as a source address and which would hide typos.
  let address: ipaddr.IPv4 | ipaddr.IPv6;
  // node:net is strict about the IPv4 inside IPv4-mapped IPv6 too ("::ffff:0x7f.0.0.1").
  if (isIPv4(value) && ipaddr.IPv4.isValidFourPartDecimal(value)) address = ipaddr.IPv4.parse(value);
  else if (isIPv6(value) && ipaddr.IPv6.isValid(value)) address = ipaddr.IPv6.parse(value);
  else return null;
  if (address.kind() === 'ipv6' && (address as ipaddr.IPv6).isIPv4MappedAddress()) {
    address = (address as ipaddr.IPv6).toIPv4Address();
  }
  return address.kind() === 'ipv4'
    ? ipaddr.IPv4.networkAddressFromCIDR(`${address.toString()}/24`).toString()
    : ipaddr.IPv6.networkAddressFromCIDR(`${address.toString()}/48`).toString();
}
