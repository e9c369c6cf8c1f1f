import { expect } from 'chai';
import fc from 'fast-check';
import ipaddr from 'ipaddr.js';
import { truncateIp } from '../../src/domain/evidence';

describe('truncateIp: IPv4 without parsing', () => {
  it('gives the /24 network exactly as ipaddr.js computes it, for every dotted-quad address', () => {
    fc.assert(
      fc.property(fc.ipV4(), (ip) => truncateIp(ip) === ipaddr.IPv4.networkAddressFromCIDR(`${ip}/24`).toString() && truncateIp(` ${ip}\t`) === truncateIp(ip)),
      { numRuns: 5000 },
    );
    expect(truncateIp('203.0.113.77')).to.equal('203.0.113.0');
    expect(truncateIp('255.255.255.255')).to.equal('255.255.255.0');
  });

  it('still refuses what is not a canonical address (leading zeros, short forms, out of range)', () => {
    for (const bad of ['203.0.113.077', '127.1', '0x7f.0.0.1', '256.0.0.1', '1.2.3', '1.2.3.4.5', '2130706433', '1.2.3.4/24', '']) expect(truncateIp(bad), bad).to.equal(null);
  });
});
