import com.pixelmed.validate.DicomSRValidator;
public class SrBatch {
  public static void main(String[] files) throws Exception {
    DicomSRValidator validator = new DicomSRValidator();
    validator.setOptionCheckTemplateID(true);
    validator.setOptionCheckAmbiguousTemplate(true);
    for (String file : files) {
      System.out.println("@@@ " + file);
      System.out.println(validator.validate(file));
    }
  }
}
