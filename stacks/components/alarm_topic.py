"""An SNS topic for security alarms, encrypted with a customer-managed key, TLS-only."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from stacks.components.lifecycle import supporting_key
from stacks.components.service_role import ServiceRole


class AlarmTopic(Construct):
    """Alarm topic (KMS customer-managed key, rotated; TLS-only) with an optional e-mail subscription.

    CloudWatch alarms may use the key to publish; publishers from code need
    `kms:GenerateDataKey` and `kms:Decrypt` on `key` besides `sns:Publish` on `topic`.

    Attributes:
        topic: the SNS topic.
        key: the KMS key encrypting it.
    """

    def __init__(
        self, scope: Construct, construct_id: str, *, description: str, email: str, workshop_mode: bool
    ) -> None:
        super().__init__(scope, construct_id)
        stack = cdk.Stack.of(self)
        self.key = supporting_key(
            self, "Key", description=f"Encrypts the alarm topic: {description}", workshop_mode=workshop_mode
        )
        self.topic = sns.Topic(self, "Topic", display_name=description[:100], master_key=self.key, enforce_ssl=True)
        # CloudWatch alarm actions (AWS docs, "Using Amazon CloudWatch alarms" with SSE topics) and
        # EventBridge rules (the configuration-change alarms) publish through this key and topic,
        # only for alarms and rules of this account. A topic policy replaces SNS's default one,
        # so each service's right to publish is stated here.
        for sid, service in (
            ("AllowCloudWatchAlarmsOfThisAccount", "cloudwatch.amazonaws.com"),
            ("AllowEventBridgeRulesOfThisAccount", "events.amazonaws.com"),
        ):
            this_account = {"StringEquals": {"aws:SourceAccount": stack.account}}
            publishers: dict = dict(this_account)
            if service == "events.amazonaws.com":
                # Only this account's rules in this region: EventBridge names the rule in aws:SourceArn
                # (EventBridge User Guide, "Using resource-based policies for Amazon EventBridge").
                publishers["ArnLike"] = {
                    "aws:SourceArn": f"arn:{stack.partition}:events:{stack.region}:{stack.account}:rule/*"
                }
            principal = iam.ServicePrincipal(service)
            self.key.add_to_resource_policy(
                iam.PolicyStatement(
                    sid=sid,
                    principals=[principal],
                    actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                    resources=["*"],
                    conditions=this_account,
                )
            )
            self.topic.add_to_resource_policy(
                iam.PolicyStatement(
                    sid=sid,
                    principals=[principal],
                    actions=["sns:Publish"],
                    resources=[self.topic.topic_arn],
                    conditions=publishers,
                )
            )
        if email:
            self.topic.add_subscription(subscriptions.EmailSubscription(email))
        self._action = cw_actions.SnsAction(self.topic)

    def alarm_on_api_calls(
        self,
        scope: Construct,
        construct_id: str,
        *,
        source: str,
        event_names: list[str],
        description: str,
        detail: dict | None = None,
    ) -> events.Rule:
        """An EventBridge rule on CloudTrail management events ("AWS API Call via CloudTrail") to this topic.

        Needs a trail logging management events in the region: the network stack's multi-Region trail.
        """
        pattern = {"eventSource": [f"{source}.amazonaws.com"], "eventName": event_names, **(detail or {})}
        rule = events.Rule(
            scope,
            construct_id,
            description=description,
            event_pattern=events.EventPattern(
                source=[f"aws.{source}"], detail_type=["AWS API Call via CloudTrail"], detail=pattern
            ),
        )
        # The target is set on the CfnRule itself: CDK's targets.SnsTopic would also add an unconditioned
        # "events.amazonaws.com may publish" statement to the topic policy, next to the conditioned one above.
        cfn_rule = rule.node.default_child
        assert isinstance(cfn_rule, events.CfnRule)
        cfn_rule.targets = [events.CfnRule.TargetProperty(arn=self.topic.topic_arn, id="AlarmTopic")]
        return rule

    def grant_publish(self, role: ServiceRole) -> None:
        """Let a function's role publish to the encrypted topic (through SNS only)."""
        role.allow(["sns:Publish"], [self.topic.topic_arn], sid="PublishAlarms")
        role.allow(
            ["kms:GenerateDataKey", "kms:Decrypt"],
            [self.key.key_arn],
            sid="EncryptAlarmMessages",
            conditions={"StringEquals": {"kms:ViaService": f"sns.{cdk.Stack.of(self).region}.amazonaws.com"}},
        )

    def alarm(
        self,
        scope: Construct,
        construct_id: str,
        *,
        metric: cloudwatch.IMetric,
        threshold: float,
        comparison: cloudwatch.ComparisonOperator,
        description: str,
        missing: cloudwatch.TreatMissingData = cloudwatch.TreatMissingData.NOT_BREACHING,
        evaluation_periods: int = 1,
    ) -> cloudwatch.Alarm:
        """An alarm notifying this topic; `description` should name the remedy."""
        alarm = cloudwatch.Alarm(
            scope,
            construct_id,
            metric=metric,
            threshold=threshold,
            comparison_operator=comparison,
            evaluation_periods=evaluation_periods,
            treat_missing_data=missing,
            alarm_description=description,
        )
        alarm.add_alarm_action(self._action)
        return alarm

    def alarm_when_above_zero(
        self, scope: Construct, construct_id: str, *, metric: cloudwatch.IMetric, description: str
    ) -> cloudwatch.Alarm:
        """An alarm, publishing to the topic, that fires as soon as `metric` is above zero."""
        return self.alarm(
            scope,
            construct_id,
            metric=metric,
            threshold=0,
            comparison=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            description=description,
        )
