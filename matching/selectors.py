"""Reads of counselors and matches."""

from django.contrib.auth.models import AbstractBaseUser

from hearo.errors import Forbidden, Unauthorized
from matching.models import Counselor


def counselor_for_user(*, user: AbstractBaseUser | None) -> Counselor:
    """Return the active counselor behind a user, or raise Forbidden."""
    if user is None or not user.is_authenticated or not user.is_active:
        raise Unauthorized("counselor login required")
    try:
        return Counselor.objects.select_related("user").get(user=user)
    except Counselor.DoesNotExist:
        raise Forbidden("this account is not a counselor") from None


def counselor_profile(*, counselor: Counselor) -> dict:
    return {
        "counselorId": counselor.counselor_id,
        "username": counselor.user.get_username(),
        "displayName": counselor.name,
        "status": counselor.status,
    }
