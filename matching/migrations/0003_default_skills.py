from django.db import migrations


def default_skills(apps, schema_editor):
    """Counselors from before routing serve the default queue in all its languages."""
    queue = apps.get_model("queues", "Queue").objects.filter(queue_id="general").first()
    if queue is None:
        return
    for counselor in apps.get_model("matching", "Counselor").objects.all():
        counselor.queues.add(queue)
        if not counselor.languages:
            counselor.languages = list(queue.languages)
            counselor.save(update_fields=["languages"])


class Migration(migrations.Migration):
    dependencies = [("matching", "0002_skills_and_wrap_up"), ("queues", "0004_default_queue")]
    operations = [migrations.RunPython(default_skills, migrations.RunPython.noop)]
