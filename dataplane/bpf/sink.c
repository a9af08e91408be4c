// SPDX-License-Identifier: GPL-2.0
// The lab's traffic sink: drops every frame at the driver. The interface's
// rx_packets counter still counts them, which is what the comparison reads.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int sink(struct xdp_md *ctx)
{
	return XDP_DROP;
}

char _license[] SEC("license") = "GPL";
