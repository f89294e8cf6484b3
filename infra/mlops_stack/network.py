"""Network: a VPC over two availability zones.

Public subnets hold only the load balancers and the NAT gateway; tasks and the database live
in private subnets and reach AWS APIs through the NAT gateway (one by default, one per zone
with high availability). S3 traffic (the artifacts) takes a free gateway endpoint instead,
so model uploads and downloads pay no NAT data charge.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

ZONE_COUNT = 2
NAT_INSTANCE_TYPE = "t4g.nano"
NAT_INSTANCE_AMI = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64"
"""Amazon Linux 2023 for ARM, the latest, from AWS's public SSM parameter."""
NAT_USER_DATA = """#!/bin/bash
# A NAT instance: forward the private subnets' traffic and masquerade it as this address.
set -euo pipefail
dnf install -y iptables-services
echo net.ipv4.ip_forward=1 > /etc/sysctl.d/90-nat.conf
sysctl -p /etc/sysctl.d/90-nat.conf
iface=$(ip route show default | awk '{print $5; exit}')
iptables -t nat -A POSTROUTING -o "$iface" -j MASQUERADE
iptables -F FORWARD
service iptables save
systemctl enable --now iptables
"""


def subnet_cidrs(vpc_cidr: str, *, zones: int = ZONE_COUNT) -> tuple[list[str], list[str]]:
    """Split the VPC into `zones` public then `zones` private subnets, each 1/16 of it."""
    network = ipaddress.ip_network(vpc_cidr)
    blocks = [str(block) for block in network.subnets(new_prefix=network.prefixlen + 4)]
    return blocks[:zones], blocks[zones : 2 * zones]


@dataclass
class NetworkArgs:
    cidr: str
    availability_zones: Sequence[str]
    region: pulumi.Input[str] = "us-east-1"
    nat_gateways: int = 1
    nat_instance: bool = False
    """One NAT instance (t4g.nano) instead of the NAT gateways: about a tenth of the price,
    no managed failover, bandwidth of a small instance."""
    tags: dict[str, str] | None = None


class Network(pulumi.ComponentResource):
    """VPC, subnets, routes and NAT; the default security group is emptied."""

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlops:infra:Network", name, None, opts)
        zones = list(args.availability_zones)[:ZONE_COUNT]
        if len(zones) < ZONE_COUNT:
            raise ValueError(
                f"the region offers {len(zones)} availability zones, need {ZONE_COUNT}"
            )
        tags = args.tags or {}
        child = pulumi.ResourceOptions(parent=self)
        public_cidrs, private_cidrs = subnet_cidrs(args.cidr)

        self.vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=args.cidr,
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags={**tags, "Name": f"{name}-vpc"},
            opts=child,
        )
        # No rules: anything that forgets its own security group gets no traffic at all.
        aws.ec2.DefaultSecurityGroup(
            f"{name}-default-sg",
            vpc_id=self.vpc.id,
            tags={**tags, "Name": f"{name}-default"},
            opts=child,
        )
        igw = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=self.vpc.id, tags=tags, opts=child)

        public_rt = aws.ec2.RouteTable(
            f"{name}-public-rt",
            vpc_id=self.vpc.id,
            routes=[aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", gateway_id=igw.id)],
            tags={**tags, "Name": f"{name}-public"},
            opts=child,
        )
        self.public_subnets: list[aws.ec2.Subnet] = []
        self.private_subnets: list[aws.ec2.Subnet] = []
        for index, zone in enumerate(zones):
            public = aws.ec2.Subnet(
                f"{name}-public-{index}",
                vpc_id=self.vpc.id,
                cidr_block=public_cidrs[index],
                availability_zone=zone,
                map_public_ip_on_launch=False,
                tags={**tags, "Name": f"{name}-public-{zone}", "tier": "public"},
                opts=child,
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-public-{index}",
                subnet_id=public.id,
                route_table_id=public_rt.id,
                opts=child,
            )
            self.public_subnets.append(public)

        self.nat_gateways: list[aws.ec2.NatGateway] = []
        self.nat_ips: list[aws.ec2.Eip] = []
        self.nat_instance: aws.ec2.Instance | None = None
        if args.nat_instance:
            nat_count = 1
            self._nat_instance(name, args, igw, tags)
        else:
            nat_count = max(1, min(args.nat_gateways, ZONE_COUNT))
            for index in range(nat_count):
                eip = aws.ec2.Eip(f"{name}-nat-{index}", domain="vpc", tags=tags, opts=child)
                nat = aws.ec2.NatGateway(
                    f"{name}-nat-{index}",
                    allocation_id=eip.id,
                    subnet_id=self.public_subnets[index].id,
                    tags={**tags, "Name": f"{name}-nat-{index}"},
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[igw]),
                )
                self.nat_ips.append(eip)
                self.nat_gateways.append(nat)

        private_route_tables: list[pulumi.Output[str]] = []
        for index, zone in enumerate(zones):
            private = aws.ec2.Subnet(
                f"{name}-private-{index}",
                vpc_id=self.vpc.id,
                cidr_block=private_cidrs[index],
                availability_zone=zone,
                map_public_ip_on_launch=False,
                tags={**tags, "Name": f"{name}-private-{zone}", "tier": "private"},
                opts=child,
            )
            if self.nat_instance is not None:
                route = aws.ec2.RouteTableRouteArgs(
                    cidr_block="0.0.0.0/0",
                    network_interface_id=self.nat_instance.primary_network_interface_id)
            else:
                route = aws.ec2.RouteTableRouteArgs(
                    cidr_block="0.0.0.0/0", nat_gateway_id=self.nat_gateways[index % nat_count].id)
            private_rt = aws.ec2.RouteTable(
                f"{name}-private-rt-{index}",
                vpc_id=self.vpc.id,
                routes=[route],
                tags={**tags, "Name": f"{name}-private-{zone}"},
                opts=child,
            )
            private_route_tables.append(private_rt.id)
            aws.ec2.RouteTableAssociation(
                f"{name}-private-{index}",
                subnet_id=private.id,
                route_table_id=private_rt.id,
                opts=child,
            )
            self.private_subnets.append(private)

        aws.ec2.VpcEndpoint(
            f"{name}-s3",
            vpc_id=self.vpc.id,
            service_name=pulumi.Output.from_input(args.region).apply(
                lambda region: f"com.amazonaws.{region}.s3"
            ),
            vpc_endpoint_type="Gateway",
            route_table_ids=private_route_tables,
            tags={**tags, "Name": f"{name}-s3"},
            opts=child,
        )

        self.vpc_id = self.vpc.id
        self.public_subnet_ids = [subnet.id for subnet in self.public_subnets]
        self.private_subnet_ids = [subnet.id for subnet in self.private_subnets]
        self.nat_public_ips = [eip.public_ip for eip in self.nat_ips]
        self.register_outputs(
            {
                "vpc_id": self.vpc_id,
                "public_subnet_ids": self.public_subnet_ids,
                "private_subnet_ids": self.private_subnet_ids,
                "nat_public_ips": self.nat_public_ips,
            }
        )


    def _nat_instance(self, name: str, args: NetworkArgs, igw: aws.ec2.InternetGateway,
                      tags: dict[str, str]) -> None:
        """A t4g.nano in the first public subnet that forwards for the private subnets: its
        group lets in only the VPC, no key pair, IMDSv2 only, its own Elastic IP."""
        child = pulumi.ResourceOptions(parent=self)
        group = aws.ec2.SecurityGroup(
            f"{name}-nat-instance-sg", vpc_id=self.vpc.id,
            description="NAT instance: forwards the VPC's traffic out", tags=tags, opts=child)
        aws.vpc.SecurityGroupIngressRule(
            f"{name}-nat-instance-in", security_group_id=group.id, cidr_ipv4=args.cidr,
            ip_protocol="-1", description="the VPC's traffic to forward", opts=child)
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-nat-instance-out", security_group_id=group.id, cidr_ipv4="0.0.0.0/0",
            ip_protocol="-1", description="out to the internet", opts=child)
        ami = aws.ssm.get_parameter_output(name=NAT_INSTANCE_AMI)
        self.nat_instance = aws.ec2.Instance(
            f"{name}-nat-instance", ami=ami.value, instance_type=NAT_INSTANCE_TYPE,
            subnet_id=self.public_subnets[0].id, vpc_security_group_ids=[group.id],
            source_dest_check=False, user_data=NAT_USER_DATA,
            user_data_replace_on_change=True,
            metadata_options=aws.ec2.InstanceMetadataOptionsArgs(
                http_tokens="required", http_endpoint="enabled"),
            root_block_device=aws.ec2.InstanceRootBlockDeviceArgs(
                volume_type="gp3", volume_size=8, encrypted=True),
            tags={**tags, "Name": f"{name}-nat-instance"},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[igw]))
        self.nat_ips.append(aws.ec2.Eip(f"{name}-nat-0", domain="vpc",
                                        instance=self.nat_instance.id, tags=tags, opts=child))
