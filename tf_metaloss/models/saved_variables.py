"""`SavedVariables`: variables a `MetaModel` saves beside its weights."""

import keras
from keras.src.saving.keras_saveable import KerasSaveable


class SavedVariables(KerasSaveable):
    """Base of the holders of variables saved with a model, outside its weights.

    `model.save()` and `keras.models.load_model()` store and restore
    `variables` in order. Subclasses set `variables`, and say what they hold
    (`saved_what`) and which compile settings must match to load them
    (`compiled_with`), for the error on a mismatch.
    """

    saved_what = "state"
    compiled_with = "the same loss"

    def _obj_type(self):
        return "Loss"  # saving_lib walks its attributes with the skip set of a Loss

    def save_own_variables(self, store):
        for i, variable in enumerate(self.variables):
            store[str(i)] = keras.ops.convert_to_numpy(variable)

    def load_own_variables(self, store):
        if len(store.keys()) != len(self.variables):
            raise ValueError(
                f"The saved {self.saved_what} holds {len(store.keys())} variables; this "
                f"model's has {len(self.variables)}. Load the file into a model compiled "
                f"with {self.compiled_with}."
            )
        for i, variable in enumerate(self.variables):
            variable.assign(store[str(i)])
