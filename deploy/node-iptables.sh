#!/bin/sh
# pxguard node firewall: not rendered. nodeCIDRs is auto, and the rules need the node addresses:
#   pxguard render iptables --nodes 10.0.1.11-10.0.1.14,10.0.2.0/24 > node-iptables.sh
echo "pxguard node firewall: render this script with --nodes (the node addresses); nothing was changed" >&2
exit 1
