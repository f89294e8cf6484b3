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

        nat_count = max(1, min(args.nat_gateways, ZONE_COUNT))
        self.nat_gateways: list[aws.ec2.NatGateway] = []
        self.nat_ips: list[aws.ec2.Eip] = []
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
            nat = self.nat_gateways[index % nat_count]
            private_rt = aws.ec2.RouteTable(
                f"{name}-private-rt-{index}",
                vpc_id=self.vpc.id,
                routes=[aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", nat_gateway_id=nat.id)],
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
